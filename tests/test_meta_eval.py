"""benchmarks/meta_eval.py: fixed groups, picks by validation, normalization against the pool."""
import math

import numpy as np
import torch

from benchmarks.meta_eval import evaluate, evaluated, groups, pick_and_test, report
from metahp_fast import SearchSpace
from metahp_fast.meta.metadataset import MetaDataset


def _meta(d=10, f=3, m=16, noise=0.0, seed=0):
    """Two kinds of dataset: configurations 0-7 are good on even datasets, 8-15 on odd ones."""
    g = torch.Generator().manual_seed(seed)
    space = SearchSpace.default("sgd")
    base = torch.rand(d, 1, m, generator=g, dtype=torch.float64)
    good = torch.zeros(d, 1, m, dtype=torch.float64)
    good[0::2, :, :8] = -1.0
    good[1::2, :, 8:] = -1.0
    test = (2 + base + good).expand(d, f, m).clone()
    val = test + noise * torch.randn(d, f, m, generator=g, dtype=torch.float64)
    return MetaDataset(space, space.sample_u(m, seed=seed), [f"ds{i:02d}" for i in range(d)], val, test)


def test_groups_hold_every_dataset_out_exactly_once_and_are_fixed():
    names = [f"d{i}" for i in range(23)]
    gs = groups(names, 5, seed=0)
    assert sorted(sum(gs, [])) == sorted(names) and {len(g) for g in gs} <= {4, 5}
    assert gs == groups(list(reversed(names)), 5, seed=0)


def test_picks_by_validation_per_fold_and_skips_missing_folds():
    meta = _meta(noise=0.0)
    meta.val[0, 1] = math.nan  # dataset 0 lacks fold 1
    members = [0, 9, 12]
    expect = np.mean([float(meta.test[0, f, members][int(meta.val[0, f, members].argmin())]) for f in (0, 2)])
    assert pick_and_test(meta, 0, members) == expect


def test_without_noise_the_pool_scores_zero_and_greedy_covers_both_kinds():
    result = evaluate(_meta(noise=0.0), n_groups=5, ks=(1, 8), random_ks=(8,), draws=20)
    scores = result["scores"]
    assert len(scores) == 10 and all(row["pool-16"] == 0.0 for row in scores.values())
    greedy = np.array([row["greedy-8"] for row in scores.values()])
    const = np.array([row["constant-1"] for row in scores.values()])
    assert greedy.mean() < const.mean()  # one configuration fits only one kind of dataset
    text = report(result, "cmd")
    assert "| greedy-8 |" in text and "Groups (each held out once)" in text


def test_only_keel_datasets_are_held_out_when_the_meta_dataset_has_other_sources_too():
    meta = _meta(d=12)
    names = [f"keel:ds{i:02d}" for i in range(10)] + ["digits", "mnist1d"]
    meta = MetaDataset(meta.space, meta.u, names, meta.val, meta.test)
    result = evaluate(meta, n_groups=5, ks=(1,), random_ks=(8,), draws=5)
    held = sorted(sum(result["groups"], []))
    assert held == names[:10] and set(result["scores"]) == set(names[:10])
    assert evaluated(["a", "b"]) == ["a", "b"]  # no KEEL dataset: every one is held out in turn
