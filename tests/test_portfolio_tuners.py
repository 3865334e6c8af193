"""Warm starts from a portfolio: the tuners' first round holds its members, the CLI's suggest --k and tune
--portfolio."""
import json

import pytest
import torch

from metahp_fast import SearchSpace, cli
from metahp_fast.meta.conditioned import ConditionedPortfolio, PortfolioConfig
from metahp_fast.tasks import from_arrays
from metahp_fast.tuners import TUNERS
from metahp_fast.tuners.base import portfolio_members
from tests.single_thread import one_thread  # noqa: F401  (autouse)

SPACE = SearchSpace.default("adamw")


def _task(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return from_arrays(x.numpy(), (x[:, 0] + 0.3 * x[:, 1] > 0).long().numpy(), name="toy")


def _portfolio():
    """An untrained portfolio with distinct members (its base logits spread them over the space)."""
    p = ConditionedPortfolio(SPACE, PortfolioConfig(max_k=8, hidden=8))
    with torch.no_grad():
        p.base.copy_(torch.linspace(-2, 2, 8).unsqueeze(1).expand(8, 4) * torch.tensor([1.0, -1.0, 0.5, 1.0]))
    return p


def _close(trial_hp, member):
    return all(float(trial_hp[k]) == pytest.approx(float(member[k]), rel=1e-5) for k in SPACE.dims)


@pytest.mark.parametrize("method", ["random", "sh", "pbt", "tpe"])
def test_first_round_holds_the_portfolio_members_then_fresh_draws(method):
    task, p = _task(), _portfolio()
    kw = dict(optimizer="adamw", hidden=(8,), steps=20, batch_size=32, backend="torch", init=p, init_k=4)
    if method == "tpe":
        pytest.importorskip("optuna")
    tuner = TUNERS[method](SPACE, **kw)
    members = portfolio_members(p, SPACE, task, 4, 20, 32)
    want = SPACE.from_unconstrained(members, round_ints=True)
    res = tuner.run(task, 6, seed=0)
    first = sorted(res.trials, key=lambda t: t["id"])[:4]
    for j, t in enumerate(first):
        assert _close(t["hparams"], {k: v[j] for k, v in want.items()}), (method, j)
    later = sorted(res.trials, key=lambda t: t["id"])[4:]
    assert later and not any(_close(t["hparams"], {k: v[j] for k, v in want.items()})
                             for t in later for j in range(4))  # fresh draws beside the members
    assert res.init_hparams and _close(res.init_hparams, {k: v[0] for k, v in want.items()})


def test_es_starts_at_the_first_member_and_bad_portfolios_are_refused():
    task, p = _task(), _portfolio()
    tuner = TUNERS["es"](SPACE, optimizer="adamw", hidden=(8,), steps=10, batch_size=32, backend="torch", init=p,
                         n_pairs=1)
    res = tuner.run(task, 3, seed=0)
    want = SPACE.from_unconstrained(portfolio_members(p, SPACE, task, 8, 10, 32)[0])
    assert _close(res.init_hparams, want)
    with pytest.raises(ValueError, match="init: the portfolio proposes"):
        TUNERS["random"](optimizer="sgd", init=p)
    with pytest.raises(ValueError, match="init_k"):
        TUNERS["random"](SPACE, optimizer="adamw", init=p, init_k=0)


def test_members_are_clipped_into_a_narrower_tuner_space():
    task, p = _task(), _portfolio()
    narrow = SPACE.with_ranges({"lr": (1e-3, 2e-3)})
    lr = narrow.from_unconstrained(portfolio_members(p, narrow, task, 8, 20, 32))["lr"]
    assert bool(((lr >= 1e-3 - 1e-12) & (lr <= 2e-3 + 1e-12)).all())


def test_structural_dimensions_the_portfolio_does_not_propose_sit_at_their_middle():
    task, p = _task(), _portfolio()
    grown = SPACE.with_ranges({"depth": (1, 3), "dropout": (0.0, 0.2)})
    values = grown.from_unconstrained(portfolio_members(p, grown, task, 8, 20, 32), round_ints=True)
    plain = SPACE.from_unconstrained(portfolio_members(p, SPACE, task, 8, 20, 32))
    assert values["depth"].tolist() == [2.0] * 8
    assert torch.allclose(values["dropout"], torch.full((8,), 0.1, dtype=torch.float64))
    assert torch.allclose(values["lr"], plain["lr"])
    res = TUNERS["random"](grown, optimizer="adamw", hidden=(8,), steps=10, batch_size=32, backend="torch",
                           init=p).run(task, 4, seed=0)
    assert res.init_hparams["depth"] == 2


def test_cli_suggest_k_prints_the_portfolio_and_refuses_what_does_not_fit(tmp_path, capsys):
    path = tmp_path / "p.pt"
    _portfolio().save(path)
    assert cli.main(["suggest", "--data", "iris", "--k", "8", "--portfolio", str(path), "--steps", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == 8 and out["optimizer"] == "adamw" and out["steps"] == 50
    assert len(out["portfolio"]) == 8 and set(out["portfolio"][0]) == set(SPACE.dims)
    assert len({m["lr"] for m in out["portfolio"]}) == 8
    assert cli.main(["suggest", "--data", "iris", "--k", "8"]) == 0  # the pretrained one
    assert len(json.loads(capsys.readouterr().out)["portfolio"]) == 8
    assert cli.main(["suggest", "--data", "iris", "--k", "40", "--portfolio", str(path)]) == 2
    assert "--k: k must be an int from 1 to 8" in capsys.readouterr().err
    assert cli.main(["suggest", "--data", "iris", "--k", "4", "--optimizer", "sgd"]) == 2
    assert "--optimizer" in capsys.readouterr().err
    assert cli.main(["suggest", "--data", "iris", "--k", "4", "--portfolio", str(tmp_path / "none.pt")]) == 2
    assert "--portfolio" in capsys.readouterr().err


def test_cli_tune_portfolio_is_opt_in_and_needs_adamw(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["tune", "--data", "iris", "--portfolio", "--steps", "20", "--budget", "4", "--hidden", "8",
                     "--out", str(out), "--no-progress"]) == 2
    assert "--portfolio: the shipped portfolio is built for AdamW" in capsys.readouterr().err
    assert cli.main(["tune", "--data", "iris", "--portfolio", "--optimizer", "adamw", "--steps", "20", "--budget",
                     "9", "--hidden", "8", "--method", "random", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "warm start: the pretrained portfolio's 8 configurations" in printed
    report = json.loads((out / "report.json").read_text())
    assert len(report["trials"]) == 9 and report["init_hparams"] is not None
