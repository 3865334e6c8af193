"""The meta-dataset: quasi-random configurations, learning curves of one population, the build script."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metahp_fast.meta.metadataset import assemble, checkpoint_steps, quasi_random_u, train_pool
from metahp_fast.search_space import SearchSpace, u_bounds
from metahp_fast.tasks import load_task
from metahp_fast.training import TrainConfig, make_population, prepare_task

ROOT = Path(__file__).resolve().parents[1]


def test_quasi_random_configurations_fill_the_u_box_and_are_seeded():
    space = SearchSpace.default("adamw")
    u = quasi_random_u(space, 64, seed=1)
    low, high = u_bounds(space)
    assert u.shape == (64, len(space.dims)) and bool(((u >= low) & (u <= high)).all())
    assert torch.equal(u, quasi_random_u(space, 64, seed=1)) and not torch.equal(u, quasi_random_u(space, 64, 2))
    # every coordinate's 4 quarters hold 16 points each: evener than independent draws
    quarter = ((u - low) / (high - low) * 4).floor().clamp(max=3)
    assert all(torch.bincount(quarter[:, j].long(), minlength=4).tolist() == [16] * 4 for j in range(u.shape[1]))
    with pytest.raises(ValueError, match="m must be"):
        quasi_random_u(space, 0)


def test_checkpoints_are_even_and_end_at_the_last_step():
    assert checkpoint_steps(10, 4) == [2, 5, 7, 10] and checkpoint_steps(3, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="checkpoints"):
        checkpoint_steps(2, 3)


def test_the_curve_ends_where_a_population_trained_by_hand_ends():
    task, space = load_task("wine", seed=0), SearchSpace.default("sgd")
    u, config = quasi_random_u(space, 5, seed=0), TrainConfig(steps=12, batch_size=32, hidden=(9,))
    rec = train_pool(task, space, u, config, seed=3, n_checkpoints=3)
    assert rec["checkpoints"] == [4, 8, 12] and rec["val_loss"].shape == (3, 5) == rec["test_accuracy"].shape
    t = prepare_task(task, config)
    pop = make_population(t, space, u, config, seed=3)
    from metahp_fast.seeds import derive_seed
    for c in range(3):
        pop.fit(t.x_train, t.y_train, steps=4, batch_size=32, seed=derive_seed(3, c), progress=False)
    assert torch.equal(rec["test_loss"][-1], pop.evaluate(t.x_test, t.y_test)["loss"].double())


def test_build_script_builds_resumes_refuses_other_settings_and_assembles(tmp_path):
    def build(*extra):
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "build_metadataset.py"), "--out",
                               str(tmp_path), "--datasets", "wine,iris", "--folds", "2", "--configs", "6",
                               "--epochs", "1", "--checkpoints", "2", *extra],
                              capture_output=True, text=True, timeout=300)
    r = build("--shard", "0/2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "parts").glob("*.pt"))) == 2  # half of 4 parts
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "parts").glob("*.pt")}
    r = build()  # resumes: the other two, the first two untouched
    assert r.returncode == 0, r.stderr[-2000:]
    parts = sorted((tmp_path / "parts").glob("*.pt"))
    assert len(parts) == 4 and all(first[p.name] == p.stat().st_mtime_ns for p in parts if p.name in first)
    r = build("--configs", "7")
    assert r.returncode != 0 and "other settings" in r.stderr
    m = json.loads((tmp_path / "manifest.json").read_text())
    md = assemble(parts, SearchSpace.from_dict(m["space"]), torch.tensor(m["u"], dtype=torch.float64))
    assert md.datasets == ["iris", "wine"] and md.val.shape == (2, 2, 6) and bool(torch.isfinite(md.val).all())
    assert (tmp_path / "cost.md").read_text().startswith("# Meta-dataset build cost (4 of 4 parts)")
    # curves.pt: the compact committed form; meta_eval reads it where the parts are gone, losing only float64
    from benchmarks.meta_eval import load_metadataset
    for p in parts:
        p.rename(tmp_path / p.name)
    md2 = load_metadataset(str(tmp_path))
    assert md2.datasets == md.datasets and torch.equal(md2.val, md.val.float().double())
    assert torch.equal(md2.test, md.test.float().double())
