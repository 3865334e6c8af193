"""Tuners over one population, all with ``tuner.run(task_or_data, budget, seed) -> TuneResult``."""
from .base import Tuner, TuneResult, TuningRun
from .es_gradient import ESGradient
from .halving import Hyperband, SuccessiveHalving, rung_plan
from .pbt import PBT, copy_candidates
from .random_search import RandomSearch
from .tpe import TPE, optuna_available

#: Tuners by the name the command line and the quality harness use.
TUNERS = {cls.name: cls for cls in (RandomSearch, SuccessiveHalving, Hyperband, PBT, ESGradient, TPE)}

__all__ = ["Tuner", "TuneResult", "TuningRun", "RandomSearch", "SuccessiveHalving", "Hyperband", "PBT", "ESGradient",
           "TPE", "TUNERS", "rung_plan", "copy_candidates", "optuna_available"]
