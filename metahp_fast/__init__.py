"""metahp_fast: tune dense networks by training a population of K hyperparameter candidates at once."""
from .population import Population
from .population_group import PopulationGroup
from .search_space import Fixed, IntUniform, LogUniform, SearchSpace, Uniform
from .tasks import Task, from_arrays, list_tasks, load_task
from .meta import MetaLearner
from .model_file import load_model

__version__ = "0.1.0"
__all__ = ["Population", "PopulationGroup", "SearchSpace", "LogUniform", "Uniform", "IntUniform", "Fixed", "Task", "load_task",
           "from_arrays", "list_tasks", "MetaLearner", "load_model", "__version__"]
