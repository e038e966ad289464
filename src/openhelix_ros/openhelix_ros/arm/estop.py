"""The emergency stop as a state, without ROS: whether the arm must hold, and why.

``estop`` (std_msgs/Bool) is a level, not an event: every message says whether the stop is pressed now,
and the arm holds while the newest one says so. Publishers latch it (reliable, transient local:
common/node_utils.py ``ESTOP_QOS``), so an arm_interface that starts or restarts late holds at once.
Because a stop that cannot be heard is no stop, the monitor also holds

- ``estop_watch`` "lost" (the default): when the last matched estop publisher went away (a pendant
  unplugged, its node ended), until one is back and says released;
- ``estop_watch`` "required": whenever no estop publisher is matched, from the start;
- ``estop_timeout`` > 0: when no estop message came for that long, for a publisher that repeats its
  state as a heartbeat (a killed process is only noticed by DDS after its lease, some 20 s; a heartbeat
  is noticed in ``estop_timeout``).

``estop_watch`` "off" and ``estop_timeout`` 0 leave only the pressed state.
"""

from __future__ import annotations

from typing import NamedTuple

ESTOP_WATCH_MODES = ("off", "lost", "required")


class EstopDecision(NamedTuple):
    """Whether the arm must hold and why (``reason`` empty when it may move); ``changed`` when this
    differs from the previous decision (the node logs and acts on changes)."""

    hold: bool
    reason: str
    changed: bool


class EstopMonitor:
    def __init__(self, watch: str = "lost", timeout: float = 0.0) -> None:
        if watch not in ESTOP_WATCH_MODES:
            raise ValueError(f"estop_watch must be one of {', '.join(ESTOP_WATCH_MODES)}, got {watch!r}")
        if timeout < 0:
            raise ValueError(f"estop_timeout must be >= 0 s, got {timeout}")
        self.watch = watch
        self.timeout = float(timeout)
        self.pressed = False
        self._last_message: float | None = None
        self._had_publisher = False
        # After a loss (or from the start, when one is required) only a message from a publisher says
        # released: a publisher matched again has not yet delivered its state.
        self._awaiting_message = watch == "required"
        self._cause = ""  # why the arm holds now ("" while it may move): a change is logged once

    def on_message(self, pressed: bool, now: float) -> None:
        self.pressed = bool(pressed)
        self._last_message = now
        self._awaiting_message = False

    def decide(self, now: float, publishers: int) -> EstopDecision:
        """The decision for ``now``, given how many estop publishers are matched."""
        if publishers > 0:
            self._had_publisher = True
        elif self.watch != "off" and (self._had_publisher or self.watch == "required"):
            self._awaiting_message = True
        cause, reason = "", ""
        if self.pressed:
            cause, reason = "pressed", "ESTOP pressed"
        elif publishers == 0 and self.watch == "required":
            cause, reason = "required", "no estop publisher (estop_watch required)"
        elif publishers == 0 and self.watch == "lost" and self._had_publisher:
            cause, reason = "lost", "the estop publisher went away (estop_watch lost)"
        elif self._awaiting_message:
            cause, reason = "awaiting", f"an estop publisher is matched but has not said released yet (estop_watch {self.watch})"
        elif self.timeout > 0 and self._last_message is not None and now - self._last_message > self.timeout:
            cause = "timeout"
            reason = f"no estop message for {now - self._last_message:.2f} s (estop_timeout {self.timeout:g} s)"
        changed = cause != self._cause
        self._cause = cause
        return EstopDecision(bool(cause), reason, changed)
