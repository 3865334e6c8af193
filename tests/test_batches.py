"""The one minibatch sampler that Population.fit and the exact hypergradient's unroll both draw from."""
import pytest
import torch

from metahp_fast.batches import Batches


def test_each_epoch_is_a_fresh_permutation_and_its_short_tail_is_dropped():
    b = Batches(10, 3, seed=0)
    idx = b.take(9)  # 3 batches an epoch (the 10th row waits for the next epoch): 3 epochs
    assert idx.shape == (9, 3) and idx.dtype == torch.int64
    epochs = [idx[3 * e:3 * e + 3].flatten() for e in range(3)]
    for rows in epochs:
        assert len(set(rows.tolist())) == 9 and 0 <= int(rows.min()) and int(rows.max()) < 10
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch


def test_seeded_and_the_same_however_the_steps_are_split():
    whole = Batches(50, 16, seed=5).take(11)
    b = Batches(50, 16, seed=5)
    assert torch.equal(torch.cat([b.take(1), b.take(4), b.take(6)]), whole)
    assert torch.equal(Batches(50, 16, seed=5).take(11), whole)
    assert not torch.equal(Batches(50, 16, seed=6).take(11), whole)
    # the first epoch is the seeded permutation of range(n), cut into batches
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(whole[:3].flatten(), perm[:48])


def test_a_batch_larger_than_the_data_is_the_whole_data_each_step():
    b = Batches(7, 100, seed=1)
    assert b.batch_size == 7
    idx = b.take(3)
    assert idx.shape == (3, 7)
    assert all(sorted(r.tolist()) == list(range(7)) for r in idx)
    assert not torch.equal(idx[0], idx[1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Batches(10, 0, seed=0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        Batches(0, 4, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        Batches(10, 4, seed=0.5)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        Batches(10, 4, seed=0).take(0)
