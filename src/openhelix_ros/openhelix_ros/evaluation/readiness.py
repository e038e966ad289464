"""Whether the graph is complete enough for an evaluation's first instruction, without ROS.

The evaluator node counts endpoints (ROS graph queries) and hands the counts in; :func:`graph_gaps`
says what is missing and :class:`GraphWait` decides how long to wait for the gaps to close.
"""

from __future__ import annotations

from dataclasses import dataclass

from openhelix_ros.common import graph

GRAPH_SETTLE = 0.5  # s the graph must stay complete before the first instruction (endpoints appear one by one)
SAY_EVERY = 10.0  # s between "waiting for the graph" lines


@dataclass(frozen=True)
class GraphCounts:
    """Endpoint counts the evaluator reads from the ROS graph (its own subscriptions left out)."""

    policies: int  # ee_trajectory publishers
    latent_consumers: int  # goal_latent subscribers other than the evaluator
    latent_producers: int  # goal_latent publishers
    instruction_listeners: int  # instruction subscribers discovered
    instruction_matched: int  # of them, matched to the evaluator's publisher


def graph_gaps(counts: GraphCounts) -> list[str]:
    """What the graph still lacks before the first instruction may go out (empty: ready).

    A policy must publish ee_trajectory; if something consumes goal_latent (System 1), a System 2 must
    publish it; every discovered subscriber of instruction must be matched to the evaluator's
    publisher. A subscriber that matches after an instruction went out misses it unless it is
    transient local (System 2 and the scripted expert subscribe volatile), and a missed first
    instruction fails the chain for nothing. Models load for a minute or more, so a graph started
    together with the evaluator is usually not complete when the first goal arrives."""
    gaps = []
    if not counts.policies:
        gaps.append(f"no policy publishes {graph.EE_TRAJECTORY}")
    if counts.latent_consumers and not counts.latent_producers:
        gaps.append(f"{graph.GOAL_LATENT} has subscribers but no publisher (System 2 not up)")
    if not counts.instruction_listeners or counts.instruction_matched < counts.instruction_listeners:
        gaps.append(f"{counts.instruction_matched} of {counts.instruction_listeners} {graph.INSTRUCTION} "
                    "subscriber(s) matched")
    return gaps


@dataclass(frozen=True)
class GraphWaitStep:
    """``done``: stop waiting, with ``gaps`` left (empty: the graph is complete); ``line``: to log."""

    done: bool
    gaps: tuple[str, ...]
    line: str | None = None


class GraphWait:
    """Wait up to ``timeout`` s for the gaps to close and stay closed for ``settle`` s (a node creates its
    endpoints one after the other); says what it waits for every ``say_every`` s."""

    def __init__(self, started: float, timeout: float, settle: float = GRAPH_SETTLE, say_every: float = SAY_EVERY):
        self.started = float(started)
        self.timeout = float(timeout)
        self.settle = float(settle)
        self.say_every = float(say_every)
        self._said = self.started
        self._complete_since: float | None = None

    def update(self, now: float, gaps: list[str]) -> GraphWaitStep:
        if gaps:
            self._complete_since = None
        elif self._complete_since is None:
            self._complete_since = now
        elif now - self._complete_since >= self.settle:
            return GraphWaitStep(True, ())
        if now - self.started >= self.timeout:
            return GraphWaitStep(True, tuple(gaps))
        if gaps and now - self._said >= self.say_every:
            self._said = now
            return GraphWaitStep(False, tuple(gaps),
                                 f"waiting for the graph ({now - self.started:.0f} s): {'; '.join(gaps)}")
        return GraphWaitStep(False, tuple(gaps))
