"""Generated tasks: the synthetic families (teacher MLPs, Gaussian mixtures) and MNIST-1D made locally."""
import os
import random

import numpy as np
import pytest
import torch

from metahp_fast.tasks import BUILTINS, GENERATED, gaussian_mixture_data, load_task, teacher_data
from tests.single_thread import one_thread  # noqa: F401  (autouse)


def test_generated_names_are_separate_from_the_sklearn_builtins():
    assert set(GENERATED) == {"mnist1d", "teacher", "gaussian_mixture"}
    assert not set(GENERATED) & set(BUILTINS)


@pytest.mark.parametrize("gen", [teacher_data, gaussian_mixture_data])
def test_families_are_seeded(gen):
    a, b, c = gen(seed=3), gen(seed=3), gen(seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_teacher_sizes_classes_and_label_noise():
    x, y = teacher_data(seed=0, n_samples=3000, n_features=7, n_classes=4, noise=0.0)
    assert x.shape == (3000, 7) and y.shape == (3000,) and set(np.unique(y)) <= set(range(4))
    _, y_noisy = teacher_data(seed=0, n_samples=3000, n_features=7, n_classes=4, noise=0.4)
    # a fraction `noise` of labels is redrawn uniformly, so 0.4 * 3/4 of them change
    assert abs((y != y_noisy).mean() - 0.4 * 0.75) < 0.03


def test_teacher_regression_is_an_mse_task_with_the_given_noise():
    clean = teacher_data(seed=1, n_samples=2000, n_classes=0, noise=0.0)[1]
    noisy = teacher_data(seed=1, n_samples=2000, n_classes=0, noise=0.5)[1]
    assert clean.dtype.kind == "f"
    assert abs(np.std(noisy - clean) - 0.5) < 0.03
    t = load_task("teacher:n_classes=0,noise=0.5,n_samples=500")
    assert not t.is_classification and t.loss == "mse" and t.n_outputs == 1


def test_gaussian_mixture_balance_separation_and_noise():
    x, y = gaussian_mixture_data(seed=0, n_samples=1000, n_features=5, n_classes=4, clusters_per_class=1,
                                 separation=20.0, noise=0.5)
    assert x.shape == (1000, 5) and np.bincount(y).tolist() == [250] * 4
    # far-apart blobs: every point is nearest to its own class's mean
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    nearest = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() == 1.0
    within = np.mean([x[y == c].std(0).mean() for c in range(4)])
    assert abs(within - 0.5) < 0.05


def test_family_parameters_in_the_name_and_their_errors():
    t = load_task("gaussian_mixture:n_features=3,n_classes=6,n_samples=600", seed=2)
    assert t.n_features == 3 and t.n_classes == 6 and len(t.x_train) + len(t.x_val) + len(t.x_test) == 600
    assert t.meta["source"].startswith("gaussian_mixture(")
    with pytest.raises(ValueError, match="keys.*n_samples"):
        load_task("teacher:width=3")
    with pytest.raises(ValueError, match="n_features must be a number"):
        load_task("teacher:n_features=abc")
    with pytest.raises(ValueError, match="n_classes must be 0"):
        teacher_data(n_classes=1)
    with pytest.raises(ValueError, match="noise"):
        teacher_data(noise=1.5)
    with pytest.raises(ValueError, match="n_samples"):
        gaussian_mixture_data(n_samples=1)
    with pytest.raises(ValueError, match="separation"):
        gaussian_mixture_data(separation=-1.0)


def test_mnist1d_default_split_generated_locally(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    monkeypatch.chdir(tmp_path)  # mnist1d's get_dataset would write a pickle here; make_dataset must not
    np.random.seed(7)
    random.seed(7)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    a, b = load_task("mnist1d", seed=0, scaling="standard"), load_task("mnist1d", seed=1, scaling="standard")
    # the generator reseeds the global RNGs; the loader puts them back
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before
    assert os.listdir(tmp_path) == []
    assert (a.n_features, a.n_classes) == (40, 10)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (3200, 800, 1000)
    # the test split is MNIST-1D's own 1000 rows whatever the seed; train/validation follow the seed
    torch.testing.assert_close(a.x_test * a.std + a.mean, b.x_test * b.std + b.mean)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_val, b.y_val)
    from mnist1d.data import get_dataset_args, make_dataset
    raw = make_dataset(get_dataset_args())
    np.testing.assert_array_equal(a.y_test.numpy(), raw["y_test"])
