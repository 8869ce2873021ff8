"""Where independent units of work run: in this process (the default) or on a Ray cluster.

A unit (one fold × seed of a cross-validation, one trial of a sweep, variants of compress) is a module-level
function and its keyword arguments. It writes its own records as it ends, to a folder every node can reach
(the output folder, the dataset and the feature cache are paths, shared between the nodes of a cluster: NFS
or the like).
Shipping features through Ray's object store instead would still leave every model and record written on
whichever node trained it; a shared path keeps a run resumable from any machine. So the driver only plans
units, skips those whose records are already written, and summarises what the units return.

On Ray each unit is a task with ``cpus_per_unit`` CPUs: N workers on N cores do not oversubscribe, because
each worker's TensorFlow and BLAS thread pools are set to the unit's CPUs (a unit trains a small model:
one thread per run and more runs at once is faster than many threads per run, on this field's models). A
task whose worker dies (killed, out of memory, a lost node) is retried by Ray ``max_retries`` times; the
records of the units that finished are already on disk.

TensorFlow's results depend on its thread count (sums are split across threads), so a unit gives
bit-identical figures in either runner when both use the same number of threads: set
``TF_NUM_INTRAOP_THREADS`` for an in-process run to compare it with Ray's one thread per unit.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.errors import ConfigError, UserError

log = logging.getLogger(__name__)
RAY_VERSION = "2.52"  # the extra's pin (pyproject.toml), named in the error when Ray is missing
LOCAL_OBJECT_STORE_BYTES = 256 << 20
CONNECT_TIMEOUT_S = 10.0
WAIT_S = 2.0


@dataclasses.dataclass(frozen=True)
class Unit:
    """One independent piece of work; ``function`` and ``kwargs`` must pickle (a module-level function)."""

    name: str
    function: Callable[..., dict]
    kwargs: dict


class Runner(Protocol):
    """Runs units and yields each with its result as it ends (in any order)."""

    description: str

    def run(self, units: Sequence[Unit], *, on_wait: Callable[[], None] | None = None
            ) -> Iterator[tuple[Unit, dict]]: ...


class InProcess:
    """One unit after another in this process: nothing to install, and callbacks see every epoch."""

    description = "in-process"

    def run(self, units: Sequence[Unit], *, on_wait: Callable[[], None] | None = None
            ) -> Iterator[tuple[Unit, dict]]:
        for unit in units:
            yield unit, unit.function(**unit.kwargs)


class OnRay:
    """Units as Ray tasks on a local cluster (``address`` "local") or an existing one ("auto" or an address)."""

    def __init__(self, address: str, *, cpus_per_unit: int = 1, max_retries: int = 3) -> None:
        if cpus_per_unit < 1:
            raise ConfigError(f"cpus per unit must be at least 1, not {cpus_per_unit}")
        self.address, self.cpus_per_unit, self.max_retries = address, cpus_per_unit, max_retries
        self.description = f"Ray ({address})"

    def run(self, units: Sequence[Unit], *, on_wait: Callable[[], None] | None = None
            ) -> Iterator[tuple[Unit, dict]]:
        """Every unit is submitted at once; a unit that fails does not stop the others (their records are
        worth keeping), and the first failure is raised once they have all ended. ``on_wait`` runs every
        ``WAIT_S`` seconds in which no unit ended (to show the workers' progress)."""
        if not units:
            return
        ray = import_ray()
        connect(ray, self.address)
        task = ray.remote(run_unit).options(num_cpus=self.cpus_per_unit, max_retries=self.max_retries,
                                            runtime_env={"env_vars": thread_limits(self.cpus_per_unit)})
        pending = {task.remote(unit.function, unit.kwargs): unit for unit in units}
        failure: BaseException | None = None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            if not ready:
                if on_wait:
                    on_wait()
                continue
            ref = ready[0]
            unit = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:  # a bug in the unit, or a worker that died max_retries times
                log.error("%s failed on Ray: %s", unit.name, exc)
                failure = failure or exc
                continue
            if isinstance(outcome, UnitError):
                failure = failure or outcome.error()
                continue
            yield unit, outcome
        if failure is not None:
            raise failure


@dataclasses.dataclass(frozen=True)
class UnitError:
    """A user error raised in a worker, carried back as its message: the driver raises it as the same one-line
    error (an exception pickled across processes loses its keyword-only arguments)."""

    kind: str
    message: str
    path: str | None

    def error(self) -> UserError:
        from dslite_tiny import errors

        kind = getattr(errors, self.kind, UserError)
        return kind(self.message, path=self.path)


def run_unit(function: Callable[..., dict], kwargs: dict) -> dict | UnitError:
    """What a Ray worker runs (named so: its process is ``ray::run_unit`` in ``ps``)."""
    try:
        return function(**kwargs)
    except UserError as exc:
        return UnitError(type(exc).__name__, exc.message, exc.path)


def thread_limits(threads: int) -> dict[str, str]:
    """Environment that caps a worker's thread pools (read when TensorFlow and BLAS start in it)."""
    value = str(threads)
    return {"TF_NUM_INTRAOP_THREADS": value, "TF_NUM_INTEROP_THREADS": value, "OMP_NUM_THREADS": value,
            "OPENBLAS_NUM_THREADS": value, "MKL_NUM_THREADS": value, "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


def import_ray():
    """Ray, or the one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray: pip install 'dslite-tiny[distributed]' (Ray {RAY_VERSION})") from None
    return ray


def connect(ray, address: str) -> None:
    """Start a local cluster on this machine's cores ("local") or join a running one; once per process."""
    if ray.is_initialized():
        return
    options = {"log_to_driver": False, "configure_logging": False}  # workers' TensorFlow chatter stays in Ray's logs
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs asked for: keep Ray's tip quiet
    try:
        if address == "local":  # a new cluster even where another runs; a small object store (units return
            # small records) leaves the memory to TensorFlow
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
        else:
            _check_reachable(address)
            ray.init(address=address, **options)
    except ConnectionError as exc:
        reason = "none runs on this machine" if address == "auto" else " ".join(str(exc).split())[:160]
        raise UserError(f"--ray {address}: no Ray cluster there ({reason}); start one with 'ray start --head' or "
                        f"use --ray local") from None
    log.info("Ray: %s CPUs in the cluster", ray.cluster_resources().get("CPU"))


def _check_reachable(address: str) -> None:
    """A HOST:PORT that does not answer fails here at once (Ray itself would retry it for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", or a ray:// client address: Ray reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(exc.strerror or str(exc)) from None


def for_workers(path: Path | None) -> Path | None:
    """``path`` made absolute: a worker on another node starts in another working directory."""
    return None if path is None else Path(path).resolve()


def cache_for_workers(cache: FeatureCache | None) -> FeatureCache | None:
    return cache if cache is None or cache.root is None else FeatureCache(for_workers(cache.root))


def make_runner(ray_address: str | None, *, cpus_per_unit: int = 1) -> Runner:
    """In-process when ``ray_address`` is None, else on Ray."""
    return InProcess() if ray_address is None else OnRay(ray_address, cpus_per_unit=cpus_per_unit)
