"""The files shipped inside the package: ``pretrained_<stem>_<optimizer>.pt`` beside this module (the
meta-learner's stem is empty: ``pretrained_<optimizer>.pt``)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Stems of the portfolio files, which a meta-learner's name pattern would otherwise match.
PORTFOLIO_STEMS = ("portfolio", "nearest")


def shipped_file(stem: str, optimizer: str, what: str) -> Path:
    """The shipped ``what`` for ``optimizer``; a ValueError naming ``optimizer`` and listing the ones shipped."""
    prefix = f"pretrained_{stem}_" if stem else "pretrained_"
    path = HERE / f"{prefix}{optimizer}.pt"
    if path.is_file():
        return path
    others = tuple(f"pretrained_{s}_" for s in PORTFOLIO_STEMS if s != stem)
    have = sorted(p.stem[len(prefix):] for p in HERE.glob(f"{prefix}*.pt") if not p.name.startswith(others))
    raise ValueError(f"optimizer: no pretrained {what} for {optimizer!r}; available: {have}")


__all__ = ["HERE", "PORTFOLIO_STEMS", "shipped_file"]
