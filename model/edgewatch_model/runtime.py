"""Process-wide runtime settings that must be made before JAX is imported."""

from __future__ import annotations

import os
import sys


def configure_threads(threads: int = 1) -> None:
    """Limit XLA (JAX's CPU backend) and BLAS to `threads` threads.

    XLA reads its flags when JAX initialises its backend, so this must run
    before the first `import jax` in the process; afterwards it only warns."""
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if threads <= 1 and "xla_cpu_multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["XLA_FLAGS"] = flags.strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(max(1, threads)))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
