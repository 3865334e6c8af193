"""Launch the fused step a few times at one case and configuration, for a profiler (Nsight Compute) to catch.

    ncu --clock-control none -k regex:fused_mlp --launch-skip 3 --launch-count 1 --set full \
        --import-source yes -o fused python3 -m benchmarks.profile_fused --case digits --K 4096
"""
import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.common import Case, make_batches, make_population  # noqa: E402
from metahp_fast.backends.triton_backend import _kernel_hparams  # noqa: E402
from metahp_fast.kernels import fused_mlp  # noqa: E402
from metahp_fast.optimizers import OPTIMIZERS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="digits")
    ap.add_argument("--K", type=int, default=4096)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--config", type=int, default=0, help="index into fused_mlp.CONFIGS")
    ap.add_argument("--launches", type=int, default=5)
    a = ap.parse_args()
    case = Case(a.case, a.K, a.optimizer)
    s = make_population(case, "triton", "cuda")._state
    x, y = make_batches(case, "cuda", n=1)[0]
    hp = _kernel_hparams(s, None)
    st = s.opt_state[OPTIMIZERS[case.optimizer].state_names[0]]
    for _ in range(a.launches):
        fused_mlp.fused_mlp_step(x, y, s.params, st, s.opt_state.get("exp_avg_sq"), hp, s.step_count, s.alive,
                                 adamw=case.optimizer == "adamw", config=fused_mlp.CONFIGS[a.config])
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
