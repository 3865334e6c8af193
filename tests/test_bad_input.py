"""Every bad input raises a ValueError/TypeError naming the argument, before any work: nothing changes."""
import pytest
import torch

from metahp_fast import Population

LAYERS = [8, 16, 3]


def make(**kw):
    args = dict(layers=LAYERS, size=3, optimizer="sgd", hparams={"lr": 0.1, "momentum": 0.9}, seed=0)
    args.update(kw)
    return Population(**args)


def snapshot(pop):
    sd = pop.state_dict()
    return [t.clone() for t in sd["params"]] + [t.clone() for v in sd["optimizer_state"].values() for t in v] + \
        [sd["step_count"].clone(), sd["alive"].clone()] + [v.clone() for v in sd["hparams"].values()]


X, Y = torch.randn(10, 8), torch.randint(0, 3, (10,))
STEP_CASES = {  # id: (callable(pop), exception, words the message must contain)
    "nan in x": (lambda p: p.step(torch.where(torch.rand(10, 8) < 0.1, float("nan"), X), Y), ValueError, "x"),
    "inf in x": (lambda p: p.step(X.clone().index_fill_(0, torch.tensor([3]), float("inf")), Y), ValueError, "x"),
    "label out of range": (lambda p: p.step(X, torch.full((10,), 3)), ValueError, "y"),
    "negative label": (lambda p: p.step(X, torch.full((10,), -1)), ValueError, "y"),
    "float labels for CE": (lambda p: p.step(X, torch.rand(10)), TypeError, "y"),
    "bool labels": (lambda p: p.step(X, torch.ones(10, dtype=torch.bool)), TypeError, "y"),
    "wrong feature count": (lambda p: p.step(torch.randn(10, 9), Y), ValueError, "x"),
    "x 3-D": (lambda p: p.step(torch.randn(10, 8, 1), Y), ValueError, "x"),
    "x/y length mismatch": (lambda p: p.step(X, Y[:7]), ValueError, "y"),
    "y 2-D for CE": (lambda p: p.step(X, Y.view(10, 1)), ValueError, "y"),
    "empty batch": (lambda p: p.step(torch.randn(0, 8), torch.zeros(0, dtype=torch.long)), ValueError, "x"),
    "x wrong dtype": (lambda p: p.step(X.double(), Y), TypeError, "dtype"),
    "x integer": (lambda p: p.step(torch.ones(10, 8, dtype=torch.long), Y), TypeError, "x"),
    "x wrong device": (lambda p: p.step(X.to("meta"), Y), ValueError, "x"),
    "x not a tensor": (lambda p: p.step("data", Y), TypeError, "x"),
    "negative lr override": (lambda p: p.step(X, Y, lr=torch.tensor([0.1, -0.1, 0.1])), ValueError, "lr"),
    "lr override wrong length": (lambda p: p.step(X, Y, lr=torch.ones(4)), ValueError, "lr"),
    "fit steps 0": (lambda p: p.fit(X, Y, steps=0, progress=False), ValueError, "steps"),
    "fit batch_size 0": (lambda p: p.fit(X, Y, steps=2, batch_size=0, progress=False), ValueError, "batch_size"),
    "fit nan in validation": (lambda p: p.fit(X, Y, steps=2, x_val=X * float("nan"), y_val=Y, progress=False),
                              ValueError, "x"),
    "fit schedule wrong shape": (lambda p: p.fit(X, Y, steps=3, lr_schedule=torch.ones(4), progress=False),
                                 ValueError, "lr_schedule"),
    "fit schedule negative": (lambda p: p.fit(X, Y, steps=3, lr_schedule=lambda s, b: -1.0, progress=False),
                              ValueError, "lr_schedule returned a negative or non-finite learning rate for step 0"),
    "fit schedule nan later": (lambda p: p.fit(X, Y, steps=1, lr_schedule=lambda s, b: b * float("nan"),
                                               progress=False), ValueError, "lr_schedule"),
    "evaluate label out of range": (lambda p: p.evaluate(X, Y + 5), ValueError, "y"),
    "evaluate batch_size negative": (lambda p: p.evaluate(X, Y, batch_size=-1), ValueError, "batch_size"),
    "hparam negative lr": (lambda p: p.hparams.__setitem__("lr", -1.0), ValueError, "lr"),
    "hparam unknown": (lambda p: p.hparams.__setitem__("learning_rate", 0.1), ValueError, "learning_rate"),
    "to_module index": (lambda p: p.to_module(3), IndexError, "index"),
}


@pytest.mark.parametrize("case", STEP_CASES, ids=list(STEP_CASES))
def test_bad_step_input_raises_and_changes_nothing(case):
    fn, exc, words = STEP_CASES[case]
    pop = make()
    pop.step(X, Y)  # some optimizer state to protect
    before = snapshot(pop)
    with pytest.raises(exc, match=words):
        fn(pop)
    after = snapshot(pop)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert pop.steps_done == 1


def test_mse_targets_checked():
    pop = make(loss="mse")
    with pytest.raises(ValueError, match="y"):
        pop.step(X, torch.randn(10, 2))
    with pytest.raises(ValueError, match="y"):
        pop.step(X, torch.full((10, 3), float("nan")))
    with pytest.raises(TypeError, match="y"):
        pop.step(X, torch.randn(10, 3, dtype=torch.float64))


CONSTRUCTOR_CASES = {
    "hparams wrong length": (dict(hparams={"lr": torch.ones(4)}), ValueError, "lr"),
    "negative lr": (dict(hparams={"lr": -0.1}), ValueError, "lr"),
    "nan lr": (dict(hparams={"lr": float("nan")}), ValueError, "lr"),
    "momentum 1": (dict(hparams={"lr": 0.1, "momentum": 1.0}), ValueError, "momentum"),
    "adamw eps 0": (dict(optimizer="adamw", hparams={"eps": 0.0}), ValueError, "eps"),
    "adamw beta2 > 1": (dict(optimizer="adamw", hparams={"beta2": 1.5}), ValueError, "beta2"),
    "init_scale 0": (dict(hparams={"init_scale": 0.0}), ValueError, "init_scale"),
    "unknown hparam": (dict(hparams={"lr": 0.1, "beta1": 0.9}), ValueError, "beta1"),
    "hparam string": (dict(hparams={"lr": "fast"}), TypeError, "lr"),
    "hparams not a dict": (dict(hparams=[0.1]), TypeError, "hparams"),
    "unknown optimizer": (dict(optimizer="sgdd", hparams={"lr": 0.1}), ValueError, "optimizer"),
    "unknown backend": (dict(backend="cuda-magic"), ValueError, "backend"),
    "unknown activation": (dict(activation="swish"), ValueError, "activation"),
    "unknown loss": (dict(loss="hinge"), ValueError, "loss"),
    "unknown init": (dict(init="xavier"), ValueError, "init"),
    "nesterov with adamw": (dict(optimizer="adamw", hparams={}, nesterov=True), ValueError, "nesterov"),
    "layers too short": (dict(layers=[5]), ValueError, "layers"),
    "layers zero width": (dict(layers=[5, 0, 3]), ValueError, "layers"),
    "layers a string": (dict(layers="64,10"), ValueError, "layers"),
    "size 0": (dict(size=0), ValueError, "size"),
    "size float": (dict(size=2.5), ValueError, "size"),
    "integer dtype": (dict(dtype=torch.int32), TypeError, "dtype"),
    "bad device": (dict(device="gpu-please"), ValueError, "device"),
    "seed not int": (dict(seed="zero"), TypeError, "seed"),
    "adamw float16 default eps": (dict(optimizer="adamw", hparams={}, dtype=torch.float16), ValueError,
                                  r"the default eps=1e-08 is 0 in torch.float16, which is not > 0; pass hparams="),
    "adamw bfloat16 default beta2": (dict(optimizer="adamw", hparams={"eps": 1e-4}, dtype=torch.bfloat16),
                                     ValueError, r"the default beta2=0.999 is 1 in torch.bfloat16"),
}


@pytest.mark.parametrize("case", CONSTRUCTOR_CASES, ids=list(CONSTRUCTOR_CASES))
def test_bad_constructor_arguments(case):
    kw, exc, words = CONSTRUCTOR_CASES[case]
    with pytest.raises(exc, match=words):
        make(**kw)


def test_step_without_value_checks_still_checks_shapes_and_trains():
    """check=False skips only the value checks (a host sync on GPUs); shapes and dtypes are still refused."""
    pop, ref = make(), make()
    x, y = pop.check_data(X, Y)
    assert torch.equal(pop.step(x, y, check=False), ref.step(X, Y))
    with pytest.raises(ValueError, match="x"):
        pop.step(torch.randn(10, 9), Y, check=False)
    with pytest.raises(TypeError, match="dtype"):
        pop.step(X.double(), Y, check=False)
    with pytest.raises(ValueError, match="x"):
        pop.check_data(X * float("nan"), Y)


def test_a_schedule_that_goes_bad_mid_fit_stops_there_with_the_earlier_steps_kept():
    """A callable schedule is checked once a span (no per-step host sync): a bad value at step 5 stops the fit
    before that step, and the steps before it count."""
    pop, ref = make(), make()
    with pytest.raises(ValueError, match="for step 5 \\(5 steps trained so far, none after them\\)"):
        pop.fit(X, Y, steps=8, batch_size=4, lr_schedule=lambda s, b: b * (1.0 if s < 5 else -1.0), progress=False)
    ref.fit(X, Y, steps=5, batch_size=4, progress=False)
    assert pop.steps_done == 5 and all(torch.equal(a, b) for a, b in zip(pop.params, ref.params))


def test_inputs_that_require_grad_train_like_plain_ones():
    """Data with requires_grad (say, the output of a feature extractor) trains as its values: the population
    does not carry gradients back into the caller's graph."""
    pop, ref = make(), make()
    x = X.clone().requires_grad_()
    assert torch.equal(pop.step(x, Y), ref.step(X, Y))
    pop.fit(x * 1.0, Y, steps=3, batch_size=4, progress=False)
    ref.fit(X, Y, steps=3, batch_size=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(pop.params, ref.params)) and x.grad is None


def test_from_modules_refuses_an_activation_it_would_compute_otherwise():
    from torch import nn
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 3))
    with pytest.raises(ValueError, match="modules\\[0\\] has GELU\\(approximate='tanh'\\); the population computes the exact GELU"):
        Population.from_modules([mlp])
    inplace = nn.Sequential(nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 3))
    assert Population.from_modules([inplace]).size == 1  # an in-place ReLU computes the same function
