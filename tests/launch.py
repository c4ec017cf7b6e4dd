"""Start a test's program in 1 or N processes the way users do (`torch.distributed.run`, as `accelerate
launch` does), with an environment free of an outer launch's variables."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

_LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(args: list[str], nproc: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` in one process, or under ``torch.distributed.run`` in ``nproc`` (CPU: gloo).

    ``args`` is what follows ``python``: a script and its arguments, or ``-m module ...``.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
