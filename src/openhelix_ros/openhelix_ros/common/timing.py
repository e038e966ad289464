"""Time in the graph, one place for the rules every node follows (docs/ros_graph.md): the two clock
modes, the lockstep stamp <-> env step mapping, the paper's Asy(N) (which steps System 2 encodes, which
latent System 1 plans with), and how often a node repeats a recurring log line. ROS-free.
"""

from __future__ import annotations

import time

# lockstep: sim time, the bridge steps only when the policy acted; realtime: the wall clock.
CLOCK_MODES = ("lockstep", "realtime")


# ---------------------------------------------------------------------------------------------------
# Asy(N): which steps get a latent, which latent a plan uses. One place for the rule both nodes follow.


def stamp_to_step(stamp_ns: int, control_rate: float = 30.0) -> int:
    """Lockstep sim time -> env step: ``round(stamp_seconds * control_rate)`` (docs/ros_graph.md)."""
    return int(round(int(stamp_ns) * 1e-9 * control_rate))


def encodes_step(step: int, latent_period_steps: int) -> bool:
    """Whether System 2 encodes the image of ``step``: steps 0, N, 2N, ... (every step for N = 0)."""
    if latent_period_steps < 0:
        raise ValueError(f"latent_period_steps must be >= 0, got {latent_period_steps}")
    return latent_period_steps == 0 or step % latent_period_steps == 0


def latent_step_for_plan(step: int, latent_period_steps: int) -> int:
    """The observation step whose latent System 1 uses when planning at ``step``.

    ``max(0, (floor(t / N) - 1) * N)``: the latent of the previous period, so it is between N and 2N - 1
    steps old (in the first period, the latent of step 0); ``N = 0``: the latent of the same step.
    """
    if latent_period_steps < 0:
        raise ValueError(f"latent_period_steps must be >= 0, got {latent_period_steps}")
    if step < 0:
        raise ValueError(f"an env step cannot be negative, got {step}")
    n = latent_period_steps
    if n == 0:
        return step
    return max(0, (step // n - 1) * n)


class RepeatLimiter:
    """Decides when a node logs a recurring problem: a new text at once, the same text again only after
    ``interval`` seconds. (rclpy's throttle is per call site, so it would hide a second, different
    problem reported by the same line.)"""

    def __init__(self, interval: float = 2.0, clock=time.monotonic) -> None:
        self.interval = float(interval)
        self._clock = clock
        self._last: dict[str, tuple[str, float]] = {}

    def should_log(self, key: str, text: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and last[0] == text and now - last[1] < self.interval:
            return False
        self._last[key] = (text, now)
        return True
