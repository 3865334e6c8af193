"""Tuning the hidden width with the other hyperparameters: a ``width`` dimension of the search space trains
every candidate at its own width inside one population, and every tuner reports and exports it."""
import pytest
import torch

from metahp_fast import SearchSpace
from metahp_fast.search_space import IntUniform
from metahp_fast.tasks import load_task
from metahp_fast.tuners import PBT, RandomSearch, SuccessiveHalving


def _space():
    base = SearchSpace.default("adamw")
    return SearchSpace({**{k: base[k] for k in base.names}, "width": IntUniform(4, 40)}, optimizer="adamw")


@pytest.mark.parametrize("tuner", [RandomSearch, SuccessiveHalving, PBT])
def test_tuners_search_the_width_and_export_the_picks_own(tuner):
    task = load_task("wine", seed=0)
    res = tuner(_space(), steps=30, hidden=(16,)).run(task, 6, seed=1)
    widths = {t["hparams"]["width"] for t in res.trials}
    assert len(widths) > 1 and all(4 <= w <= 40 and float(w).is_integer() for w in widths)
    w = int(res.best_hparams["width"])
    assert res.best_model[0].out_features == w and res.best_model[2].in_features == w
    refit = res.refit()
    assert refit.best_model[0].out_features == w
    assert res.ensemble(3).best_model is not None


def test_width_candidates_train_as_models_of_their_width():
    """The population behind a width search is the widest layer with each candidate cut to its width."""
    from metahp_fast.training import TrainConfig, make_population
    task, space = load_task("wine", seed=0), _space()
    u = space.sample_u(5, seed=0)
    pop = make_population(task, space, u, TrainConfig(hidden=(16,), optimizer="adamw"), seed=0)
    want = space.from_unconstrained(u, round_ints=True)["width"].round().long()
    assert pop.layers == (13, 40, 3) and torch.equal(pop.widths[:, 0], want)
