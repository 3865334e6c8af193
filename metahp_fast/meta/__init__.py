"""Meta-learning: a task encoder, a meta-training task distribution and the MetaLearner ``g(x, y) -> u``."""
from .encoder import FEATURES, encode
from .learner import VERSION, MetaConfig, MetaLearner, plot_curve
from .tasks_distribution import HELD_OUT, SOURCES, MetaTask, TaskDistribution, check_not_held_out

__all__ = ["FEATURES", "encode", "VERSION", "MetaConfig", "MetaLearner", "plot_curve", "HELD_OUT", "SOURCES",
           "MetaTask", "TaskDistribution", "check_not_held_out"]
