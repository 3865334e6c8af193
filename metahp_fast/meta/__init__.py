"""Meta-learning: a task encoder, a meta-training task distribution, the MetaLearner ``g(x, y) -> u`` and the
conditioned portfolio ``g(task, budget, k) -> k configurations``."""
from .conditioned import ConditionedPortfolio, PortfolioConfig
from .encoder import FEATURES, encode
from .learner import VERSION, MetaConfig, MetaLearner, plot_curve
from .tasks_distribution import HELD_OUT, SOURCES, MetaTask, TaskDistribution, check_not_held_out

__all__ = ["ConditionedPortfolio", "PortfolioConfig", "FEATURES", "encode", "VERSION", "MetaConfig", "MetaLearner",
           "plot_curve", "HELD_OUT", "SOURCES", "MetaTask", "TaskDistribution", "check_not_held_out"]
