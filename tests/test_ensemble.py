"""Ensembles from a tuner's pool: greedy ensemble selection, the Ensemble module, best.pt round trips."""
import json
import math

import pytest
import torch
from torch import nn

from metahp_fast import cli, load_model
from metahp_fast.ensemble import Ensemble, ensemble_loss, greedy_selection
from metahp_fast.tasks import load_task
from metahp_fast.tuners import RandomSearch


def test_greedy_selection_never_does_worse_than_the_best_single_model():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=gen)
    truth = torch.nn.functional.one_hot(y, 4).double() * 3
    outs = torch.stack([truth + 2.5 * torch.randn(200, 4, generator=gen, dtype=torch.float64) for _ in range(6)])
    outs[5] = math.nan  # a diverged model
    w = greedy_selection(outs, y, 10, classification=True)
    assert w[5] == 0 and math.isclose(float(w.sum()), 1.0)
    singles = [ensemble_loss(outs[i:i + 1], torch.ones(1, dtype=torch.float64), y, True) for i in range(5)]
    assert ensemble_loss(outs, w, y, True) <= min(singles)
    assert (w > 0).sum() > 1  # independent noise: averaging helps
    # regression: the mean of noisy copies beats each copy
    target = torch.randn(100, 1, generator=gen, dtype=torch.float64)
    routs = torch.stack([target + 0.5 * torch.randn(100, 1, generator=gen, dtype=torch.float64) for _ in range(4)])
    rw = greedy_selection(routs, target, 8, classification=False)
    assert ensemble_loss(routs, rw, target, False) < min(
        ensemble_loss(routs[i:i + 1], torch.ones(1, dtype=torch.float64), target, False) for i in range(4))
    with pytest.raises(ValueError, match="size"):
        greedy_selection(outs, y, 0, True)


def test_ensemble_module_averages_probabilities():
    torch.manual_seed(1)
    members = [nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)) for _ in range(3)]
    e = Ensemble(members, [1, 2, 1], classification=True)
    x = torch.randn(7, 3)
    want = sum(w * torch.softmax(m(x), 1) for w, m in zip([0.25, 0.5, 0.25], members))
    assert torch.allclose(torch.softmax(e(x), 1), want, atol=1e-6)
    with pytest.raises(ValueError, match="weight"):
        Ensemble(members, [1, 0, 1], classification=True)


@pytest.fixture(scope="module")
def result():
    return RandomSearch(steps=40).run("wine", budget=8, seed=0)


def test_a_tuner_keeps_its_best_models_and_ensembles_them(result, tmp_path):
    assert len(result.pool) == 8 and result.pool_ids[0] == result.best_id
    e = result.ensemble(6)
    info = e.config["ensemble"]
    assert info["val_loss"] <= info["single_val_loss"] + 1e-12 and set(info["members"]) <= set(result.pool_ids)
    task = result.data
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(e.best_model(task.x_val), task.y_val).item()
    assert direct == pytest.approx(info["val_loss"], rel=1e-5)
    e.save(tmp_path / "best.pt")
    torch.load(tmp_path / "best.pt", weights_only=True)
    m = load_model(tmp_path / "best.pt")
    raw = task.preprocessor.inverse_transform(task.x_test)  # raw features back
    with torch.no_grad():
        want = torch.softmax(e.best_model(task.x_test), 1).numpy()
    assert abs(m.predict_proba(raw.numpy()) - want).max() < 1e-5


def test_tune_ensemble_flag_saves_an_ensemble(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", "wine", "--method", "random", "--budget", "4", "--steps", "30",
                     "--hidden", "16", "--no-meta", "--no-progress", "--out", str(out), "--ensemble", "4"]) == 0
    assert "ensemble: " in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["ensemble"]["size"] == 4
    m = load_model(out / "best.pt")
    task = load_task("wine", seed=0)
    assert len(m.predict(task.preprocessor.inverse_transform(task.x_test))) == len(task.y_test)
    assert cli.main(["tune", "--data", "wine", "--ensemble", "2", "--refit", "best", "--out", str(tmp_path / "x")]) == 2
