"""Supervised workers, without ROS: a node's long-running loop (inference) runs its jobs through a
:class:`WorkerSupervisor`, which keeps it alive across a failed job and says when it is dead or hung.

A job that raises (anything but ``ValueError``, which is bad input and the caller's to report) is logged
with its traceback and the loop carries on with the next one; ``max_consecutive_failures`` failures in a
row mean the fault is the worker's, not the job's (a lasting CUDA out-of-memory, a broken device), and
:meth:`WorkerSupervisor.run` raises :class:`WorkerGaveUp`. A job running longer than ``deadline`` s is a
hang; :meth:`WorkerSupervisor.hung` says so (while it runs, and for good once it returned late: a
deadline is a bound, not a hint), and ``run_node`` (common/node_utils.py), which asks every few
tenths of a second, then stops the node with a non-zero exit, so that a launch ``respawn`` or the CLI's
runner restarts it instead of leaving a silent zombie subscribed on the graph.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openhelix_ros.common.parameters import ParameterSpec


def worker_deadline_parameter(default: float) -> ParameterSpec:
    """The ``worker_deadline`` parameter of a node whose worker is supervised."""
    return ParameterSpec("worker_deadline", float(default), "Longest one job of the node's worker (one plan, one "
                         "latent) may run (s); past it the worker counts as hung and the node exits non-zero for "
                         "a supervisor (launch respawn) to restart it.", read_only=True, value_range=(0.001, 3600.0))


class WorkerGaveUp(RuntimeError):
    """A worker failed on ``max_consecutive_failures`` jobs in a row."""


@dataclass(frozen=True)
class WorkerReport:
    """A worker's state at one moment (what /diagnostics shows)."""

    name: str
    jobs: int  # jobs finished, successfully or not
    failures: int  # jobs that raised, in total
    consecutive_failures: int
    busy_for: float | None  # seconds the current job has run, None when idle
    current: str  # what the current (or last) job was
    deadline: float
    last_error: str


class WorkerSupervisor:
    """Counts a worker's jobs and failures and times the job in progress. Thread-safe: the worker calls
    :meth:`run`, any other thread :meth:`hung` and :meth:`report`."""

    def __init__(self, name: str, deadline: float, max_consecutive_failures: int = 5,
                 log_error: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic) -> None:
        if not deadline > 0:
            raise ValueError(f"worker deadline must be > 0 s, got {deadline}")
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be >= 1, got {max_consecutive_failures}")
        self.name = name
        self.deadline = float(deadline)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self._log_error = log_error
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._current = ""
        self._jobs = 0
        self._failures = 0
        self._consecutive = 0
        self._last_error = ""
        self._overran: str | None = None  # a job that returned after its deadline: the worker broke its bound

    def run(self, what: str, job: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run ``job(*args)``, timed as ``what`` (e.g. "plan for the cloud at 1.200 s"): (True, its result),
        or (False, None) when it raised; a ``ValueError`` propagates (bad input is the caller's to say)."""
        with self._lock:
            self._started, self._current = self._clock(), what
        try:
            result = job(*args)
        except ValueError:
            self._finish(failed=False)
            raise
        except Exception as error:  # a fault of this job; the worker goes on unless it keeps failing
            consecutive = self._finish(failed=True, error=error)
            self._log_error(f"worker {self.name!r}: {what} failed (failure {consecutive} of "
                            f"{self.max_consecutive_failures} in a row):\n{traceback.format_exc()}")
            if consecutive >= self.max_consecutive_failures:
                raise WorkerGaveUp(f"worker {self.name!r} failed on {consecutive} jobs in a row "
                                   f"(last: {what}: {error!r}); giving up") from error
            return False, None
        self._finish(failed=False)
        return True, result

    def _finish(self, failed: bool, error: BaseException | None = None) -> int:
        with self._lock:
            took = self._clock() - self._started
            if took > self.deadline and self._overran is None:
                self._overran = (f"worker {self.name!r} hung: {self._current} ran for {took:.1f} s "
                                 f"(worker_deadline {self.deadline:g} s)")
            self._started = None
            self._jobs += 1
            if failed:
                self._failures += 1
                self._consecutive += 1
                self._last_error = f"{self._current}: {error!r}"[:500]
            else:
                self._consecutive = 0
            return self._consecutive

    def hung(self, now: float | None = None) -> str | None:
        """Why the worker counts as hung (its job ran past the deadline), or None."""
        with self._lock:
            if self._overran is not None:
                return self._overran
            if self._started is None:
                return None
            busy = (self._clock() if now is None else now) - self._started
            if busy <= self.deadline:
                return None
            return (f"worker {self.name!r} hung: {self._current} has run for {busy:.1f} s "
                    f"(worker_deadline {self.deadline:g} s)")

    def report(self, now: float | None = None) -> WorkerReport:
        with self._lock:
            busy = None if self._started is None else (self._clock() if now is None else now) - self._started
            return WorkerReport(self.name, self._jobs, self._failures, self._consecutive, busy, self._current,
                                self.deadline, self._last_error)
