"""Meta-training from the task distribution with the shipped settings: the one routine behind
``benchmarks/meta_train.py`` and ``metahp-fast meta-train``."""
from __future__ import annotations

import os
from typing import Union

from .learner import MetaConfig, MetaLearner
from .tasks_distribution import TaskDistribution

#: The settings of the shipped learner: small inner budgets keep meta-training a few minutes on a CPU.
DEFAULT_CONFIG = MetaConfig(optimizer="sgd", hidden=64, inner_hidden=(128,), n_pairs=4, sigma=0.5, meta_batch=4,
                            lr=1e-2, seed=0)
N_TASKS, META_STEPS, N_CONSTANT = 64, 300, 64


def meta_train(config: MetaConfig = DEFAULT_CONFIG, n_tasks: int = N_TASKS, meta_steps: int = META_STEPS,
               n_constant: int = N_CONSTANT, checkpoint: Union[str, os.PathLike, None] = None,
               checkpoint_every: int = 10, progress: bool = False,
               plot: Union[str, os.PathLike, None] = None) -> tuple[MetaLearner, TaskDistribution]:
    """A learner meta-trained on ``n_tasks`` tasks of ``TaskDistribution(config.seed)``: first the constant
    best-average configuration (also g's starting output), then ``meta_steps`` meta-steps; resumes from
    ``checkpoint`` when it exists. Returns the learner and the distribution."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise ValueError(f"n_tasks must be a positive int; got {n_tasks!r}")
    dist = TaskDistribution(seed=config.seed)
    tasks = dist.tasks(n_tasks)
    g = MetaLearner(config=config)
    if checkpoint is None or not os.path.exists(checkpoint):
        g.set_output(g.fit_constant(tasks, n_candidates=n_constant, seed=config.seed))
    g.fit(tasks, meta_steps=meta_steps, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
          plot=plot)
    return g, dist


__all__ = ["DEFAULT_CONFIG", "N_TASKS", "META_STEPS", "N_CONSTANT", "meta_train"]
