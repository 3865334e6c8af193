"""Files the product writes: JSON that strict parsers read, atomic replacement, and tensor files that load
with ``torch.load(weights_only=True)`` (tensors and plain JSON-compatible values only, so loading one can never
run code); :func:`upgrade` converts a file of the earlier, pickled format once, knowingly."""
from __future__ import annotations

import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (a diverged candidate's loss, an empty interval) as None, which
    strict JSON can hold (write with ``allow_nan=False``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj



def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """torch.save into a temporary file next to ``path``, then rename it over ``path`` in one step."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:  # a fresh name, created with the mode any new file gets (0o666 less the umask, which the
        tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"  # kernel applies: no umask toggling)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: Version of the tensor-file layout written by :func:`save_file`; a file of another version is refused.
FORMAT_VERSION = 2
_PLAIN = (str, int, float, bool, type(None))


class UnsafeFileError(ValueError):
    """A file that needs Python's pickle to load (an earlier metahp_fast format, or not one of ours)."""


def _check_plain(obj: Any, where: str) -> None:
    """Refuse anything but tensors and JSON-compatible values, so that the file loads with weights_only=True."""
    if isinstance(obj, (torch.Tensor,) + _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: keys must be str or int; got {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: only tensors and JSON-compatible values can be saved; got {type(obj).__name__}")


def save_file(path: Union[str, os.PathLike], kind: str, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (tensors and JSON-compatible values) as a ``kind`` file of this format."""
    reserved = sorted({"format", "kind", "version"} & set(payload))
    if reserved:
        raise ValueError(f"payload: the keys {reserved} are the file's own header; name them otherwise")
    _check_plain(payload, kind)
    atomic_save({"format": "metahp_fast", "kind": kind, "version": FORMAT_VERSION, **payload}, path)


def load_file(path: Union[str, os.PathLike], kind: Union[str, Sequence[str]],
              map_location: Any = "cpu") -> dict[str, Any]:
    """Read a ``kind`` file (or one of several kinds) written by :func:`save_file` with
    ``torch.load(weights_only=True)``: nothing in it can run code. A pickled file (an earlier format) is refused
    with what to do; so is another kind or version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError or RuntimeError for both cases below
        if _needs_pickle(e, path):  # a pickled object (a class or function reference), refused
            raise UnsafeFileError(
                f"{path} holds pickled Python objects, which could run code when loaded, so it is refused. A file "
                f"written by metahp_fast before format {FORMAT_VERSION} can be converted once, if you trust where it "
                f"came from: metahp-fast upgrade {path} --trust") from None
        raise ValueError(f"{path} is not a readable metahp_fast {kind} file (damaged, truncated or another "
                         f"format: {type(e).__name__})") from None
    if _legacy_kind(obj) == "tuner-checkpoint":
        raise ValueError(f"{path} is a tuning checkpoint written by an earlier metahp_fast version, which cannot "
                         "be converted: delete it and rerun the tuning (it starts over)")
    if _legacy_kind(obj) is not None or (isinstance(obj, dict) and "format" not in obj and "version" in obj):
        raise ValueError(f"{path} was written by an earlier metahp_fast version (before file format "
                         f"{FORMAT_VERSION}); convert it once: metahp-fast upgrade {path}")
    if not isinstance(obj, dict) or obj.get("format") != "metahp_fast":
        raise ValueError(f"{path} is not a metahp_fast file")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if obj.get("kind") not in kinds:
        raise ValueError(f"{path} is a metahp_fast {obj.get('kind')!r} file, not a "
                         f"{' or '.join(repr(k) for k in kinds)} file")
    if obj.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {obj.get('version')!r}; this metahp_fast reads version "
                         f"{FORMAT_VERSION}")
    return obj


def _needs_pickle(e: Exception, path: Path) -> bool:
    """Whether ``torch.load(weights_only=True)`` failed on pickle content it will not run (a reference to a Python
    class or function, or in a plain pickle file an opcode it does not accept), not on a damaged or foreign file."""
    text = str(e)
    if "GLOBAL" in text or "global" in text:
        return True
    with open(path, "rb") as f:  # a plain pickle of protocol 2 or later starts with the PROTO opcode
        return "Weights only load failed" in text and f.read(1) == b"\x80"


def _legacy_kind(obj: Any) -> Optional[str]:
    """What a file of the earlier format (a plain dict without ``format``) holds: "model" (a best.pt),
    "meta-learner", "meta-checkpoint" or "tuner-checkpoint"; None for anything else."""
    if not isinstance(obj, dict) or "format" in obj:
        return None
    if "model" in obj and "mean" in obj and "std" in obj:
        return "model"
    if {"version", "config", "space", "features", "learner"} <= obj.keys():
        return "meta-learner"
    if {"header", "learner", "opt"} <= obj.keys():
        return "meta-checkpoint"
    if {"header", "state"} <= obj.keys():
        return "tuner-checkpoint"
    return None


def upgrade(path: Union[str, os.PathLike], trust: bool = False) -> Optional[Path]:
    """Convert a file written by an earlier metahp_fast (a best.pt, a meta-learner file or a meta-training
    checkpoint) to this format in place, after copying the original to ``FILE.bak`` (``FILE.bak.1``, ... when that
    exists: no backup is ever replaced); returns the backup's path, or None when the file is already current.

    A file of the earlier format that holds pickled objects (a best.pt always does) is read with
    ``torch.load(weights_only=False)``, which runs any code the file carries, so only with ``trust=True``: pass it
    for files you made or whose origin you trust. Tuner checkpoints cannot be converted: delete them and rerun."""
    if not isinstance(trust, bool):
        raise TypeError(f"trust must be a bool; got {type(trust).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError or RuntimeError
        if not _needs_pickle(e, path):
            raise ValueError(f"{path} is not a readable metahp_fast file (damaged, truncated or another format: "
                             f"{type(e).__name__})") from None
        if not trust:
            raise ValueError(f"{path} holds pickled Python objects: reading it runs any code it carries. If you made "
                             f"it or trust where it came from, pass trust=True (metahp-fast upgrade {path} --trust); "
                             "otherwise delete it") from None
        try:
            old = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the caller, knowingly
        except Exception as e:  # noqa: BLE001 - whatever the pickle raised
            raise ValueError(f"{path} could not be read even trusted ({type(e).__name__}: {e}); it is not a "
                             "metahp_fast file") from None
    if isinstance(old, dict) and old.get("format") == "metahp_fast":
        if old.get("version") == FORMAT_VERSION:
            return None
        raise ValueError(f"{path} has format version {old.get('version')!r}; this metahp_fast reads and writes "
                         f"{FORMAT_VERSION} and cannot convert it")
    kind = _legacy_kind(old)
    if kind == "tuner-checkpoint":
        raise ValueError(f"{path} is a tuning checkpoint of an earlier metahp_fast, which cannot be converted: "
                         "delete it and rerun the tuning (it starts over)")
    if kind == "model":
        from .model_file import upgrade_payload
        payload = upgrade_payload(old)
    elif kind in ("meta-learner", "meta-checkpoint"):
        from .meta.learner import upgrade_payload as meta_payload
        payload = meta_payload(old, kind)
    else:
        raise ValueError(f"{path} is not a file written by metahp_fast (a best.pt, a meta-learner file or a "
                         "meta-training checkpoint)")
    backup = _backup(path)
    save_file(path, kind, payload)
    return backup


def _backup(path: Path) -> Path:
    """Copy ``path`` to the first free name of ``FILE.bak``, ``FILE.bak.1``, ... (created exclusively: an existing
    file is never replaced) and return it."""
    n = 0
    while True:
        backup = path.with_name(path.name + (".bak" if n == 0 else f".bak.{n}"))
        try:
            with open(path, "rb") as src, open(backup, "xb") as dst:
                shutil.copyfileobj(src, dst)
        except FileExistsError:
            n += 1
            continue
        shutil.copystat(path, backup)
        return backup
