"""Where jobs run: a Dask cluster (local worker processes or an existing scheduler), or this process.

Both engines take jobs lazily and keep only a window of them in flight (twice the worker count),
so a folder of a million photos never sits in memory at once, and yield results as they finish.
Worker *processes*, one thread each: torch's intra-op threads would fight over the cores, and
separate processes keep one image's crash from taking the others with it. Dask is an optional
dependency (``pip install 'neural-collages[distributed]'``), imported only here.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator

from ..errors import CollageError, ConfigurationError, MissingDependencyError

#: A job: (key the driver knows it by, positional arguments, keyword arguments).
Job = tuple[Any, tuple, dict]

INSTALL_HINT = "pip install 'neural-collages[distributed]'"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class SerialEngine:
    """Every job in this process, in order: the plain loop the Dask engine is measured against."""

    workers = 1
    description = "this process"

    def prepare(self, fn: Callable, *args) -> None:
        fn(*args)

    def run(self, fn: Callable, jobs: Iterable[Job]) -> Iterator[tuple[Any, Any]]:
        for key, args, kwargs in jobs:
            try:
                yield key, fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported like a crashed worker
                yield key, exc

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaskEngine:
    """Jobs on Dask: a new ``LocalCluster`` of ``workers`` processes, or the cluster at ``scheduler``."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, connect_timeout: float = 30.0):
        try:
            import dask.distributed  # noqa: F401 - fail here, with the install hint, not at first use
        except ImportError:
            raise MissingDependencyError(
                f"batch processing on Dask needs the distributed extra: {INSTALL_HINT} "
                "(or run in this process without Dask: serial=True)"
            ) from None
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
        self.scheduler, self._client, self.cluster = scheduler, None, None
        self.connect_timeout = connect_timeout
        if scheduler:
            self.workers = None  # known once connected
            self.description = f"the Dask cluster at {scheduler}"
        else:
            self.workers = workers or available_cores()
            self.description = f"a local Dask cluster of {self.workers} worker processes"

    @property
    def client(self):
        """The Dask client, connected (or its local cluster started) on first use: a rerun with
        nothing left to do starts no cluster."""
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout=self.connect_timeout)
                except (OSError, TimeoutError, ValueError) as exc:
                    raise CollageError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
                info = self._client.scheduler_info()["workers"].values()
                self.workers = max(1, sum(w["nthreads"] for w in info))
                self.description = f"the Dask cluster at {self.scheduler} ({self.workers} worker threads)"
            else:
                import dask

                # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive mmap
                # threshold: every large temporary becomes a fresh mmap and page-faults anew. Our
                # jobs allocate many (coder model rows); measured, a neural-codec job took 0.30 s in a
                # worker with it and 0.19 s without, as in a plain process.
                with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                    self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None, silence_logs=logging.ERROR)
                self._client = Client(self.cluster)
        return self._client

    def prepare(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` once on every worker (load a model before the first job)."""
        self.client.run(fn, *args)

    def run(self, fn: Callable, jobs: Iterable[Job]) -> Iterator[tuple[Any, Any]]:
        from dask.distributed import as_completed

        pending = iter(jobs)
        keys: dict[str, Any] = {}
        finished = None

        def submit_next() -> bool:
            nonlocal finished
            for key, args, kwargs in pending:
                future = self.client.submit(fn, *args, pure=False, **kwargs)
                if finished is None:
                    finished = as_completed()
                keys[future.key] = key
                finished.add(future)
                return True
            return False

        # The first submission connects (or starts the cluster), and so tells the worker count.
        if not submit_next():
            return
        while len(keys) < 2 * self.workers and submit_next():
            pass
        for future in finished:
            key = keys.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a crashed worker (KilledWorker) or a lost connection
                result = exc
            future.release()
            yield key, result
            submit_next()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_engine(workers: int | None = None, scheduler: str | None = None, serial: bool = False,
                connect_timeout: float = 30.0):
    """The engine a batch runs on: this process (``serial``), a cluster at ``scheduler``, or a local one."""
    if serial:
        if scheduler:
            raise ConfigurationError("serial=True runs in this process; it takes no scheduler address")
        return SerialEngine()
    return DaskEngine(workers, scheduler, connect_timeout)


def crash_message(exc: BaseException) -> str:
    """What the manifest says of a job whose worker raised instead of returning a result."""
    name = type(exc).__name__
    if name == "KilledWorker":
        return "the worker processing this input died (out of memory or a crash); it was retried and gave up"
    return f"the job failed on its worker ({name}: {exc})"
