"""TuneResult.refit: the pick retrained on train + validation rows for its chosen length."""
import math

import pytest
import torch

from metahp_fast import Population
from metahp_fast.seeds import derive_seed
from metahp_fast.tuners import RandomSearch


@pytest.fixture(scope="module")
def result():
    return RandomSearch(steps=60, eval_every=10).run("wine", budget=4, seed=3)


def test_refit_trains_the_pick_on_train_and_validation_rows_for_its_best_length(result):
    task = result.data
    curve = [(s, v) for s, v in result.curves[result.best_id] if v is not None and math.isfinite(v)]
    best_step = min(curve, key=lambda sv: sv[1])[0]
    rows = len(task.y_train) + len(task.y_val)
    r = result.refit()
    assert r.config["refit"] == {"length": "best", "chosen_step": best_step, "rows": rows,
                                 "steps": max(1, round(best_step * rows / len(task.y_train)))}
    # the same training by hand: the run's initial weights, the chosen hyperparameters, all the rows
    c = result.config
    pop = Population(task.layers(c["hidden"]), 1, c["optimizer"], {k: [v] for k, v in result.best_hparams.items()},
                     seed=result.seed)
    pop.fit(torch.cat([task.x_train, task.x_val]), torch.cat([task.y_train, task.y_val]),
            steps=r.config["refit"]["steps"], batch_size=c["batch_size"], seed=derive_seed(result.seed, 0x5EF17),
            progress=False)
    assert all(torch.equal(a, b) for a, b in zip(r.best_model.parameters(), pop.to_module(0).parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(r.best_model.parameters(), result.best_model.parameters()))
    assert r.test_metrics() != result.test_metrics() and "refit" not in result.config  # the original unchanged


def test_full_length_refit_uses_every_step(result):
    r = result.refit("full")
    rows = len(result.data.y_train) + len(result.data.y_val)
    assert r.config["refit"]["chosen_step"] == 60
    assert r.config["refit"]["steps"] == round(60 * rows / len(result.data.y_train))
    with pytest.raises(ValueError, match="length"):
        result.refit("longest")


def test_a_diverging_refit_keeps_the_original_with_a_warning(result):
    import dataclasses
    bad = dataclasses.replace(result, best_hparams={**result.best_hparams, "lr": 1e6})
    with pytest.warns(RuntimeWarning, match="diverged"):
        assert bad.refit() is bad
