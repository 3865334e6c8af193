"""Safe files: everything the product writes loads with ``torch.load(weights_only=True)``; a file that needs pickle
is refused before anything in it runs (a crafted one would create a marker file); files of the earlier, pickled
format convert once with :func:`metahp_fast.files.upgrade`, knowingly (``trust=True``), keeping a backup."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metahp_fast import files, load_model
from metahp_fast.files import FORMAT_VERSION, UnsafeFileError, load_file, save_file, upgrade
from metahp_fast.meta import FEATURES, MetaConfig, MetaLearner, MetaTask
from metahp_fast.meta import learner as learner_mod
from metahp_fast.meta.learner import _config_dict
from metahp_fast.model_file import save_model
from metahp_fast.tasks import from_arrays, gaussian_mixture_data, load_task
from tests.single_thread import one_thread  # noqa: F401  (autouse)

TINY = MetaConfig(hidden=16, inner_hidden=(8,), n_pairs=2, sigma=0.5, meta_batch=2, lr=0.05, seed=0)


class Crafted:
    """Unpickling this object calls ``open(marker, "w")``: it creates the marker file (any code could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _crafted_files(tmp_path):
    """The same payload as a torch.save zip file and as a plain pickle, both looking like an old best.pt."""
    marker = tmp_path / "marker"
    payload = {"model": Crafted(marker), "mean": torch.zeros(2), "std": torch.ones(2)}
    torch.save(payload, tmp_path / "crafted.pt")
    with open(tmp_path / "crafted.pkl", "wb") as f:
        pickle.dump(payload, f)
    assert not marker.exists()
    return marker, [tmp_path / "crafted.pt", tmp_path / "crafted.pkl"]


def _toy_task(seed=0):
    x, y = gaussian_mixture_data(seed=seed, n_samples=200, n_features=5, n_classes=3)
    return from_arrays(x, y, name=f"toy{seed}", seed=seed)


def test_a_crafted_file_is_refused_by_every_loader_and_never_unpickled(tmp_path):
    marker, paths = _crafted_files(tmp_path)
    loaders = {"load_model": load_model, "MetaLearner.load": MetaLearner.load,
               "load_file": lambda p: load_file(p, "model"),
               "meta checkpoint": lambda p: MetaLearner(config=TINY).fit(
                   [MetaTask(_toy_task(), 10, 32)], meta_steps=1, checkpoint=p)}
    for path in paths:
        for what, load in loaders.items():
            with pytest.raises(UnsafeFileError) as e:
                load(path)
            msg = str(e.value)
            assert str(path) in msg and "pickled Python objects" in msg, what
            assert f"metahp-fast upgrade {path} --trust" in msg, what
            assert not marker.exists(), what
        with pytest.raises(ValueError, match=r"pass trust=True \(metahp-fast upgrade .* --trust\)"):
            upgrade(path)  # the upgrade refuses too unless trusted
        assert not marker.exists() and not path.with_name(path.name + ".bak").exists()
    torch.load(paths[0], weights_only=False)  # the file is live: unpickling it does run its code
    assert marker.exists()


def test_every_file_the_product_writes_loads_without_pickle(tmp_path):
    task = _toy_task()
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    save_model(tmp_path / "best.pt", model, task, hparams={"lr": np.float64(0.1)}, steps=np.int64(5))
    g = MetaLearner(config=TINY)
    g.fit([MetaTask(task, 10, 32), MetaTask(_toy_task(1), 10, 32)], meta_steps=1, checkpoint=tmp_path / "ckpt.pt")
    g.save(tmp_path / "g.pt")
    shipped = Path(learner_mod.__file__).parent / "pretrained_sgd.pt"
    for path, kind in [(tmp_path / "best.pt", "model"), (tmp_path / "g.pt", "meta-learner"),
                       (tmp_path / "ckpt.pt", "meta-checkpoint"), (shipped, "meta-learner")]:
        d = torch.load(path, weights_only=True)
        assert (d["format"], d["kind"], d["version"]) == ("metahp_fast", kind, FORMAT_VERSION), path
    d = torch.load(tmp_path / "best.pt", weights_only=True)
    assert d["network"]["modules"] == ["linear", "tanh", "linear"] and d["network"]["dtype"] == "float32"
    assert d["info"] == {"hparams": {"lr": 0.1}, "steps": 5} and type(d["info"]["steps"]) is int
    x = torch.randn(4, 5, dtype=torch.float64)
    with torch.no_grad():  # the network rebuilt from plain data computes what the saved module computed
        assert torch.equal(load_model(tmp_path / "best.pt").model(x.float()), model(x.float()))


def test_save_file_refuses_what_would_need_pickle(tmp_path):
    with pytest.raises(TypeError, match=r"model\['net'\]: only tensors and JSON-compatible values"):
        save_file(tmp_path / "x.pt", "model", {"net": nn.Linear(2, 2)})
    with pytest.raises(TypeError, match="model\\[1\\] is a LayerNorm"):  # nn.Dropout is saved (with its p)
        save_model(tmp_path / "x.pt", nn.Sequential(nn.Linear(5, 3), nn.LayerNorm(3)), _toy_task())
    assert not (tmp_path / "x.pt").exists()


def _old_model_file(path, model, task, **info):
    """A best.pt as the earlier format wrote it: one pickled dict holding the nn.Sequential itself."""
    torch.save({"model": model, "mean": task.mean, "std": task.std, "class_names": task.class_names,
                "columns": task.meta.get("columns"), "target": task.meta.get("target"),
                "n_features": task.n_features, "kind": "classification" if task.is_classification else "regression",
                "y_mean": task.y_mean, "y_std": task.y_std, **info}, path)


def _old_predictions(model, task, x_raw):
    """What the earlier load_model(...).predict returned: class names of the argmax of the standardized input."""
    with torch.no_grad():
        out = model(((torch.as_tensor(x_raw) - task.mean.double()) / task.std.double()).float())
    return out, [task.class_names[int(i)] for i in out.argmax(1)]


def test_upgrade_converts_an_old_model_file_once_keeping_a_backup(tmp_path):
    lines = ["age,city,income,label"] + [f"{20 + i % 50},{['Rome', 'Oslo', 'Paris'][i % 3]},{40 + (i * 7) % 23},"
                                         f"{'yes' if i % 4 else 'no'}" for i in range(90)]
    (tmp_path / "people.csv").write_text("\n".join(lines) + "\n")
    task = load_task(str(tmp_path / "people.csv"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(approximate="tanh"), nn.Linear(7, 2))
    path = tmp_path / "best.pt"
    _old_model_file(path, model, task, hparams={"lr": 0.05}, layers=[5, 7, 2])
    original = path.read_bytes()
    rows = [{"age": "33", "city": "Oslo", "income": "51"}, {"age": "61", "city": "Rome", "income": "44.5"}]
    from metahp_fast.model_file import encode_rows
    want_out, want = _old_predictions(model, task, encode_rows(task.meta["columns"], rows).numpy())

    with pytest.raises(UnsafeFileError, match="--trust"):
        load_model(path)
    with pytest.raises(ValueError, match="trust=True"):
        upgrade(path, trust=False)
    assert path.read_bytes() == original and not (tmp_path / "best.pt.bak").exists()
    with pytest.raises(TypeError, match="trust must be a bool"):
        upgrade(path, trust="yes")

    backup = upgrade(path, trust=True)
    assert backup == tmp_path / "best.pt.bak" and backup.read_bytes() == original
    assert torch.load(path, weights_only=True)["kind"] == "model"
    g = load_model(path)
    assert g.predict(rows) == want and g.info["hparams"] == {"lr": 0.05} and g.info["layers"] == [5, 7, 2]
    np.testing.assert_array_equal(g.predict_proba(rows), torch.softmax(want_out, 1).numpy())
    assert upgrade(path) is None and path.with_name("best.pt.bak").read_bytes() == original  # already current

    _old_model_file(path, model, task)  # a second old file at the same path: the first backup stays
    second = path.read_bytes()
    assert upgrade(path, trust=True) == tmp_path / "best.pt.bak.1"
    assert (tmp_path / "best.pt.bak").read_bytes() == original and (tmp_path / "best.pt.bak.1").read_bytes() == second


def test_upgrade_of_an_old_regression_model_keeps_its_outputs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    task = from_arrays(x, x @ np.array([3.0, -1.0, 0.5]) * 100 + 7, kind="regression")
    from metahp_fast.model_file import in_target_units
    model = in_target_units(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)), task)
    _old_model_file(tmp_path / "r.pt", model, task)
    with torch.no_grad():
        want = model(((torch.as_tensor(x[:6]) - task.mean.double()) / task.std.double()).float()).squeeze(1)
    upgrade(tmp_path / "r.pt", trust=True)
    g = load_model(tmp_path / "r.pt")
    np.testing.assert_array_equal(g.predict(x[:6]), want.numpy())
    assert torch.equal(g.info["y_std"], task.y_std) and g.info["kind"] == "regression"


def test_upgrade_of_old_meta_files_and_what_it_refuses(tmp_path):
    tasks = [MetaTask(_toy_task(s), 10, 32) for s in range(2)]
    g = MetaLearner(config=TINY).fit(tasks, meta_steps=2, checkpoint=tmp_path / "ckpt.pt", checkpoint_every=1)
    # the earlier format: the same dicts, without the file header (and version 1 in a checkpoint's header)
    old = {"version": 1, "config": _config_dict(g.config), "space": g.space.to_dict(), "features": list(FEATURES),
           "learner": g._state()}
    torch.save(old, tmp_path / "g.pt")
    with pytest.raises(ValueError, match=r"earlier metahp_fast version .* metahp-fast upgrade"):
        MetaLearner.load(tmp_path / "g.pt")
    assert upgrade(tmp_path / "g.pt") == tmp_path / "g.pt.bak"  # a safe old file needs no trust
    task = _toy_task(5)
    assert MetaLearner.load(tmp_path / "g.pt").predict(task, steps=50) == g.predict(task, steps=50)

    ck = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    torch.save({"header": {**ck["header"], "version": 1}, "learner": ck["learner"], "opt": ck["opt"]},
               tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="metahp-fast upgrade"):
        MetaLearner(config=TINY).fit(tasks, meta_steps=3, checkpoint=tmp_path / "ckpt.pt")
    upgrade(tmp_path / "ckpt.pt")
    resumed = MetaLearner(config=TINY).fit(tasks, meta_steps=3, checkpoint=tmp_path / "ckpt.pt")
    assert resumed.meta_steps_done == 3 and resumed.history[:2] == g.history

    torch.save({"header": {"method": "random"}, "state": {"round": 1}}, tmp_path / "tune.ckpt")
    with pytest.raises(ValueError, match="tuning checkpoint .* delete it and rerun"):
        upgrade(tmp_path / "tune.ckpt")
    torch.save([1, 2], tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file written by metahp_fast"):
        upgrade(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        upgrade(tmp_path / "nothing.pt")
    assert not (tmp_path / "tune.ckpt.bak").exists() and not (tmp_path / "other.pt.bak").exists()


#: MetaLearner.pretrained().predict(load_task("iris"/"wine", seed=0), steps=300, batch_size=128), recorded from
#: the shipped file in the earlier format, before it was converted.
PRETRAINED_BEFORE = {
    "iris": {"lr": 0.1837188255591901, "momentum": 0.1770318250132751, "weight_decay": 4.116409098681928e-05},
    "wine": {"lr": 0.1656751207858311, "momentum": 0.014031005287274093, "weight_decay": 2.3184012921250777e-05}}


def test_the_shipped_learner_predicts_what_it_did_before_conversion():
    g = MetaLearner.pretrained()
    for name, want in PRETRAINED_BEFORE.items():
        got = g.predict(load_task(name, seed=0, scaling="standard"), steps=300, batch_size=128)  # as recorded
        assert got == pytest.approx(want, rel=1e-6), name


def test_load_file_says_what_a_wrong_file_is(tmp_path):
    save_file(tmp_path / "m.pt", "meta-learner", {"a": 1})
    with pytest.raises(ValueError, match="is a metahp_fast 'meta-learner' file, not a 'model' file"):
        load_file(tmp_path / "m.pt", "model")
    d = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**d, "version": FORMAT_VERSION + 1}, tmp_path / "v.pt")
    with pytest.raises(ValueError, match=f"has format version {FORMAT_VERSION + 1}"):
        load_file(tmp_path / "v.pt", "meta-learner")
    (tmp_path / "t.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable metahp_fast model file"):
        load_file(tmp_path / "t.pt", "model")
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "none.pt", "model")
    assert files.load_file(tmp_path / "m.pt", "meta-learner")["a"] == 1
    with pytest.raises(ValueError, match=r"payload: the keys \['version'\] are the file's own header"):
        save_file(tmp_path / "h.pt", "model", {"version": 1})
    torch.save({"header": {"method": "tpe"}, "state": {}}, tmp_path / "tune.ckpt")
    with pytest.raises(ValueError, match="tuning checkpoint written by an earlier .* delete it and rerun"):
        load_file(tmp_path / "tune.ckpt", "tuner-checkpoint")


def test_upgrade_command_converts_an_old_model_file_only_with_trust(tmp_path, capsys):
    """`metahp-fast upgrade FILE --trust`: refused without --trust (nothing changed), converted with it."""
    from metahp_fast import cli
    from metahp_fast.model_file import load_model
    old = tmp_path / "best.pt"
    task = _toy_task()
    _old_model_file(old, nn.Sequential(nn.Linear(task.n_features, 5), nn.ReLU(), nn.Linear(5, task.n_outputs)),
                    task, layers=[task.n_features, 5, task.n_outputs])
    before = old.read_bytes()
    assert cli.main(["upgrade", str(old)]) == 2
    assert "--trust" in capsys.readouterr().err and old.read_bytes() == before
    assert cli.main(["upgrade", str(old), "--trust"]) == 0
    assert "the original is kept as" in capsys.readouterr().out
    assert (tmp_path / "best.pt.bak").read_bytes() == before
    torch.load(old, weights_only=True)
    load_model(old)
    assert cli.main(["upgrade", str(old)]) == 0 and "already in the current format" in capsys.readouterr().out
    assert cli.main(["upgrade", str(tmp_path / "nope.pt")]) == 2
