"""A node's health, without ROS: what it received and published, what it dropped and why, how its
workers fare, and the few values an operator watches (a latent's age, the arm stopped). The node
publishes :meth:`NodeHealth.statuses` on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, as ROS
drivers do; common/node_utils.py ``start_diagnostics``), where ``ros2 topic echo /diagnostics``, rqt's
robot monitor or a diagnostic_aggregator read it.

Memory is bounded whatever the inputs: counters per topic of the node's own (a fixed set), at most
``MAX_REASONS`` distinct drop reasons per topic (numbers in a reason are folded, so "cloud of 12
points" and "cloud of 13 points" are one reason; the rest count under "other reasons").
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from openhelix_ros.common.supervision import WorkerSupervisor

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}

MAX_REASONS = 16
MAX_REASON_CHARS = 120
OTHER_REASONS = "other reasons"
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def reason_key(text: str) -> str:
    """The reason a drop is counted under: its text with numbers folded to '#', at most 120 characters."""
    return _NUMBER.sub("#", text.strip())[:MAX_REASON_CHARS] or "(no reason given)"


@dataclass(frozen=True)
class HealthStatus:
    """One diagnostic_msgs/DiagnosticStatus: ``name`` "node: part", a level, a one-line message and
    key/value pairs (strings, as the message carries them)."""

    name: str
    level: int
    message: str
    values: tuple[tuple[str, str], ...]


@dataclass
class _Value:
    text: str
    level: int


class NodeHealth:
    """Thread-safe counters a node's callbacks and workers feed; :meth:`statuses` (called once per
    diagnostics period) reports them with rates over the time since the previous call."""

    def __init__(self, node: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self._clock = clock
        self._lock = threading.Lock()
        self._received: dict[str, int] = {}
        self._published: dict[str, int] = {}
        self._dropped: dict[str, dict[str, int]] = {}
        self._values: dict[str, _Value] = {}
        self._workers: list[WorkerSupervisor] = []
        self._last_report: float | None = None
        self._last_counts: dict[str, int] = {}
        self._last_drops = 0

    # ----- what the node feeds ----------------------------------------------------------------------

    def received(self, topic: str) -> None:
        with self._lock:
            self._received[topic] = self._received.get(topic, 0) + 1

    def published(self, topic: str) -> None:
        with self._lock:
            self._published[topic] = self._published.get(topic, 0) + 1

    def dropped(self, topic: str, reason: str) -> None:
        key = reason_key(reason)
        with self._lock:
            reasons = self._dropped.setdefault(topic, {})
            if key not in reasons and len(reasons) >= MAX_REASONS:
                key = OTHER_REASONS
            reasons[key] = reasons.get(key, 0) + 1

    def set_value(self, key: str, text: str, level: int = OK) -> None:
        """A value of the node's own (e.g. "latent age"); a level above OK marks the node's status."""
        with self._lock:
            self._values[key] = _Value(str(text), int(level))

    def watch(self, supervisor: WorkerSupervisor) -> None:
        with self._lock:
            self._workers.append(supervisor)

    def drop_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {topic: dict(reasons) for topic, reasons in self._dropped.items()}

    # ----- what the node reports --------------------------------------------------------------------

    def statuses(self) -> list[HealthStatus]:
        now = self._clock()
        with self._lock:
            elapsed = None if self._last_report is None else max(now - self._last_report, 1e-9)
            counts = {**{f"in {t}": n for t, n in self._received.items()},
                      **{f"out {t}": n for t, n in self._published.items()}}
            rates = []
            for key, count in sorted(counts.items()):
                rate = "" if elapsed is None else f", {(count - self._last_counts.get(key, 0)) / elapsed:.1f} Hz"
                rates.append((key, f"{count} messages{rate}"))
            drops_total = sum(n for reasons in self._dropped.values() for n in reasons.values())
            recent = drops_total - self._last_drops
            drop_values = tuple((f"dropped {topic}: {reason}", str(n))
                                for topic, reasons in sorted(self._dropped.items())
                                for reason, n in sorted(reasons.items()))
            values = dict(self._values)
            workers = list(self._workers)
            self._last_report, self._last_counts, self._last_drops = now, counts, drops_total
        statuses = []
        worst = max((v.level for v in values.values()), default=OK)
        flagged = [key for key, v in values.items() if v.level > OK]
        statuses.append(HealthStatus(
            f"{self.node}: node", worst,
            "OK" if worst == OK else "; ".join(f"{key}: {values[key].text}" for key in flagged),
            tuple(rates) + tuple((key, v.text) for key, v in values.items())))
        window = "" if elapsed is None else f" in the last {elapsed:.1f} s"
        statuses.append(HealthStatus(
            f"{self.node}: dropped messages", WARN if recent else OK,
            f"{recent} dropped{window}, {drops_total} in total" if drops_total else "none dropped",
            drop_values))
        for worker in workers:
            report = worker.report(now)
            hung = worker.hung(now)
            level = ERROR if hung else WARN if report.consecutive_failures else OK
            message = hung or (f"{report.consecutive_failures} failed job(s) in a row" if report.consecutive_failures
                               else f"busy {report.busy_for:.2f} s" if report.busy_for is not None else "idle")
            statuses.append(HealthStatus(
                f"{self.node}: worker {report.name}", level, message,
                (("jobs", str(report.jobs)), ("failures", str(report.failures)),
                 ("consecutive failures", str(report.consecutive_failures)),
                 ("current job", report.current), ("deadline (s)", f"{report.deadline:g}"),
                 ("last error", report.last_error))))
        return statuses
