"""Several processes on JAX's multi-controller runtime: on one machine, or on a cluster.

A multi-process sweep runs the same ``budgetax sweep`` command in every process
after ``jax.distributed.initialize``: the mesh spans every process's devices,
each process builds and checkpoints its own shards, process 0 writes the results
store and the others wait for it.

- One machine: ``budgetax sweep ... --processes N [--devices-per-process K]``
  starts N processes with K CPU devices each, a coordinator on localhost and gloo
  CPU collectives (:func:`processes`). If one of them dies the others are stopped
  within seconds and the command exits 2; running it again resumes the sweep.
- A cluster: run ``budgetax sweep ... --distributed`` on every host
  (:func:`initialize`). On a TPU pod slice and under SLURM JAX finds the
  coordinator, process count and process index itself; elsewhere set
  ``BUDGETAX_COORDINATOR=host:port``, ``BUDGETAX_NUM_PROCESSES`` and
  ``BUDGETAX_PROCESS_ID`` on every host (e.g. in the SSH command that starts it).
  The output directory must be on a file system every host sees.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

__all__ = ["initialize", "processes"]

_ENV = ("BUDGETAX_COORDINATOR", "BUDGETAX_NUM_PROCESSES", "BUDGETAX_PROCESS_ID")
GRACE_SECONDS = 5.0


def initialize() -> None:
    """``jax.distributed.initialize`` from ``$BUDGETAX_*`` if set, else JAX's own detection."""
    import jax

    # CPU devices of several processes talk through gloo (no effect on GPU/TPU backends)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if os.environ.get(_ENV[0]):
        missing = [k for k in _ENV[1:] if not os.environ.get(k)]
        if missing:
            raise ValueError(f"{_ENV[0]} is set but {', '.join(missing)} is not: set all three")
        jax.distributed.initialize(os.environ[_ENV[0]],
                                   num_processes=int(os.environ[_ENV[1]]),
                                   process_id=int(os.environ[_ENV[2]]))
    else:
        jax.distributed.initialize()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_argv(argv: list[str]) -> list[str]:
    """The command line without the launcher's own options, plus ``--distributed``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--processes", "--devices-per-process"):
            skip = True
            continue
        if a.startswith(("--processes=", "--devices-per-process=")):
            continue
        out.append(a)
    return out + ["--distributed"]


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def xla_flags(devices: int | None = None) -> str:
    """``$XLA_FLAGS`` for a child process with ``devices`` CPU devices (``None``: JAX's
    default of one): the other flags are kept."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)


def processes(args) -> int:
    """Runs ``budgetax sweep`` in ``args.processes`` local processes; returns the exit code."""
    from budgetax import _validate

    n = _validate.positive_int("--processes", args.processes)
    k = _validate.positive_int("--devices-per-process", args.devices_per_process)
    argv = [sys.executable, "-m", "budgetax.cli", *_child_argv(args.argv)]
    coordinator = f"127.0.0.1:{_free_port()}"
    logs = tempfile.mkdtemp(prefix="budgetax-processes-")
    procs, errs = [], []
    for i in range(n):
        env = dict(os.environ, JAX_PLATFORMS="cpu", BUDGETAX_COORDINATOR=coordinator,
                   BUDGETAX_NUM_PROCESSES=str(n), BUDGETAX_PROCESS_ID=str(i))
        env["XLA_FLAGS"] = xla_flags(k)
        err = os.path.join(logs, f"process{i}.err")
        errs.append(err)
        with open(err, "w") as err_file:  # process 0 speaks on the terminal
            procs.append(subprocess.Popen(
                argv, env=env, stdout=None if i == 0 else subprocess.DEVNULL,
                stderr=None if i == 0 else err_file))
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i = failed[0]
                _stop(procs)
                code = codes[i]
                how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
                last = _last_line(errs[i]) if i else ""
                print(f"budgetax {args.command}: error: process {i} of {n} {how}"
                      + (f" ({last})" if last else "") + "; the other processes were stopped; "
                      "re-run the same command to resume", file=sys.stderr)
                return 2
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        _stop(procs)
        print(f"\nbudgetax {args.command}: interrupted; re-run the same command to resume",
              file=sys.stderr)
        return 130
