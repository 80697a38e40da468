"""Where sweep runs execute: one small executor interface, with a serial and a Dask engine.

An executor maps a function over items and yields ``(item, result)`` pairs as runs finish, in any
order. A task the engine itself lost (a worker process that died three times, a cancelled future)
comes back as ``(item, exception)`` so the sweep can record it and go on. After an interrupt
(KeyboardInterrupt while iterating), ``finished()`` hands over the results that had come in but
were not yet taken, and ``__exit__`` stops everything still running. Another engine (Ray, a
SLURM array) needs only another class with ``__enter__``, ``__exit__``, ``imap_unordered`` and
``finished``.

Dask was the lightest engine measured that serves both a laptop and a cluster (SWEEP_ENGINES.md):
a ``LocalCluster`` that chiploop starts and stops (one worker process per core, one thread each),
or ``Client(address)`` for an existing ``dask scheduler`` with its ``dask worker`` processes.
Resume is not the engine's job: the sweep's own ledger skips finished runs.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from chiploop.specs import SpecError


class Executor(Protocol):
    """Runs ``fn`` on each item; yields ``(item, fn(item))`` as each finishes (or the engine's exception)."""

    name: str  # for messages: which engine ran the sweep

    def __enter__(self) -> Executor: ...
    def __exit__(self, *exc: object) -> None: ...
    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]: ...
    def finished(self) -> Iterator[tuple[Any, Any]]: ...


class SerialExecutor:
    """In this process, one item after another (``--workers 0``: for debugging)."""

    name = "serial"

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for item in items:
            yield item, fn(item)

    def finished(self) -> Iterator[tuple[Any, Any]]:
        return iter(())  # the run in progress was the one interrupted


class DaskExecutor:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded processes, or an existing cluster at ``scheduler``."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, timeout: float = 30.0):
        self.workers = workers or os.cpu_count() or 1
        self.scheduler, self.timeout = scheduler, timeout
        self.cluster = self.client = None
        self.pending: dict[Any, Any] = {}  # future -> item, not yet handed over
        self.name = f"dask {scheduler}" if scheduler else f"dask LocalCluster, {self.workers} workers"

    def __enter__(self) -> DaskExecutor:
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.timeout)
            except (OSError, TimeoutError) as err:
                raise SpecError("--scheduler", self.scheduler,
                                f"the address of a running dask scheduler, e.g. tcp://HOST:8786 ({err})") from None
        else:
            import dask

            # no dashboard, so no statistical profiler in the workers (it samples every 10 ms, and
            # runs trained about 5 % faster without it); the HTTP server on a free port, not 8787
            # the worker processes ignore SIGINT and SIGTERM (inherited: they are started while the
            # driver ignores them), so a Ctrl-C in a terminal or a batch scheduler's SIGTERM, which reach
            # the whole process group, stop the driver alone, and the driver stops them (SIGKILL if they
            # do not close, and they exit when the driver dies): no traceback from every worker
            with dask.config.set({"distributed.worker.profile.enabled": False}), _interrupts_ignored():
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR,
                                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            self.client = Client(self.cluster)
        return self

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        interrupted = isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt)
        loggers = [logging.getLogger(name) for name in ("distributed", "tornado.application")]
        levels = [logger.level for logger in loggers]
        if interrupted:
            self._silence()
        try:
            if self.client is not None:
                if self.pending:
                    self.client.cancel(list(self.pending))
                    self.pending.clear()
                self.client.close()
            if self.cluster is not None:
                try:
                    self.cluster.close()
                except (TimeoutError, OSError):
                    # workers that do not close in time (a loaded machine) exit when the driver does; the
                    # error that ended the sweep, if any, is the one to report, not this one
                    if exc_type is None:
                        raise
        finally:
            self.client = self.cluster = None
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)

    def _silence(self) -> None:
        """No log lines or tracebacks from the scheduler, the nannies or the workers while a stopped
        sweep closes its engine (tasks cancelled, workers closed with runs in progress)."""
        for name in ("distributed", "tornado.application"):  # tornado logs the cluster's failed callbacks
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        if self.cluster is not None and self.client is not None:  # our own workers: quiet their stderr too
            try:
                self.client.run(_quiet_worker, wait=True)
            except Exception:  # a worker already gone: nothing to silence there
                pass

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed

        futures = self.pending
        for item in items:
            futures[self.client.submit(fn, item, pure=False)] = item
        for future in as_completed(list(futures)):
            yield futures.pop(future), _result(future)

    def finished(self) -> Iterator[tuple[Any, Any]]:
        """After an interrupt: the runs whose results had come in but were not yet handed over."""
        for future in [f for f in self.pending if f.status in ("finished", "error")]:
            yield self.pending.pop(future), _result(future)


def _result(future: Any) -> Any:
    try:
        result = future.result()
    except Exception as err:  # the engine lost the task (e.g. KilledWorker): a result too
        result = err
    future.release()
    return result


def _quiet_worker() -> None:
    """In a worker process: no more log records, and stderr to /dev/null (it is the terminal's)."""
    logging.disable(logging.CRITICAL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


@contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored for the block (processes started meanwhile inherit that); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def make_executor(workers: int | None = None, scheduler: str | None = None) -> Executor:
    """``workers=0``: serial in this process; ``None``: one Dask worker per core; N: N local workers;
    ``scheduler``: the Dask cluster at that address (its own workers)."""
    if workers is not None and workers < 0:
        raise SpecError("--workers", workers, "0 (serial) or a positive number of local worker processes")
    if scheduler is not None:
        if workers is not None:
            raise SpecError("--workers", workers, "not with --scheduler (the cluster's workers run the sweep)")
        if not re.fullmatch(r"(tcp|tls|ucx)://[^/:]+:\d+", scheduler):
            raise SpecError("--scheduler", scheduler, "a dask scheduler address such as tcp://HOST:8786")
        return DaskExecutor(scheduler=scheduler)
    return SerialExecutor() if workers == 0 else DaskExecutor(workers=workers)
