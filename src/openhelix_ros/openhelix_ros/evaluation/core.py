"""CALVIN's evaluation protocol run through the ROS graph, as an event-driven state machine (no rclpy).

The evaluator node only converts messages and calls services; everything the protocol decides lives
here, so tests drive it directly. The node feeds events in and carries out the commands it gets back:

    run = EvaluationRun(EvaluationConfig(num_sequences=10, variant="enriched", seed=0))
    commands = run.start(now)                      # [ResetScene(...)]
    commands = run.on_reset_done(now, True, state) # [PublishInstruction(...)]  (subtask 0 begins)
    commands = run.on_scene_state(now, step)       # [CheckTasks(...)] or []
    commands = run.on_check_result(now, True, completed, current_state, current_step)
    ...                                            # ChainFinished(...), then the next ResetScene
    commands = run.on_tick(now)                    # [] or a stall failure
    run.finished, run.summary(), run.chain_records

Scene states are opaque here (the node passes SceneState messages through; only their ``step`` counts).

Protocol (docs/ros_graph.md, "Evaluation through topics"): chains from the simulator's own sampler
(``sim.sample_chains``, the same chains for the same seed), the initial scene of chain ``i`` from
``state_for_condition`` seeded exactly as ``sim.evaluate_chains`` seeds it, one instruction per
subtask from the variant's language set, ``check_tasks`` after each ``scene_state`` against the state
at the subtask's start, until the task is completed or ``episode_length`` env steps have passed; a
chain stops at its first failure. Statistics reuse ``sim.EvaluationSummary``.

Two protocols (sim/protocol.py): ``calvin``, whose budget is ``episode_length`` env steps (360), and
``release``, the released OpenHelix / 3D Diffuser Actor loop, whose budget is ``episode_length`` policy
calls (60): the bridge executes up to 20 waypoints of each plan open-loop and counts the plans it
accepted (``SceneState.plans``); it waits for the check of every state (its CheckGate), so the oracle
sees each env step as the released loop's does, and a completion drops the rest of the plan. A check
whose state is already past the budget's last call fails the subtask, completed or not (that state
came from call 61). The protocol and its budget go into every result and report.

Step counting: in lockstep the bridge's own step counter decides (``current_state.step`` of the
``check_tasks`` answer, i.e. of the very state the oracle compared), which makes a stale
``scene_state`` from before a reset harmless; in realtime, the number of ``scene_state`` messages
received since the subtask began (30 Hz). Only one ``check_tasks`` is in flight at a time: states that
arrive meanwhile collapse into one follow-up check, so a slow oracle never builds a queue. In lockstep
the evaluator sets the bridge's ``protocol`` for the goal, and the bridge then holds every state it
publishes until a check has compared it (its CheckGate): no state goes unchecked and nothing collapses,
so a lockstep run is deterministic, and evaluation/inprocess.py reproduces it step for step. A bridge
without that parameter, and realtime, leave the checks lagging the world by the steps a check takes to
answer; a completion seen by the first check at or past the budget still counts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.sim.backends import BACKENDS, start_state
from openhelix_ros.sim.config import DYNAMIC_MODES
from openhelix_ros.sim.language import ENRICHED, evaluation_instruction
from openhelix_ros.sim.protocol import (
    CHAIN_LENGTH,
    PROTOCOLS,
    ChainResult,
    EvaluationSummary,
    conditions_for_task,
    protocol_budget,
    sample_chains,
)
from openhelix_ros.sim.tasks import check_task_names

VARIANTS = ("standard", "enriched", *(f"dynamic-{mode}" for mode in DYNAMIC_MODES))
# More chains than this is surely a typo (CALVIN uses 1000); the bound keeps a bad goal from running
# for days.
MAX_SEQUENCES = 100_000


class EvaluationError(ValueError):
    """A goal or configuration the protocol cannot run; the message says what is wrong."""


def dynamic_mode(variant: str) -> str:
    """The bridge's ``dynamic`` parameter for a variant: "" or left/forward/diagonal/circle."""
    return variant.removeprefix("dynamic-") if variant.startswith("dynamic-") else ""


def chain_seed(seed: int, chain_index: int) -> int:
    """Seed of chain ``chain_index``'s initial scene; the one ``sim.evaluate_chains`` uses."""
    return int(seed) * 100003 + int(chain_index)


def instruction_for(variant: str, task: str, seed: int, chain_index: int, subtask_index: int) -> str:
    """The instruction for one subtask. ``enriched`` picks one CALVIN-E paraphrase, the same one for
    the same (seed, chain, position) on every run; every other variant uses the standard sentence
    (CALVIN-D changes the world, not the words)."""
    if variant == "enriched":
        choices = ENRICHED[task]
        rng = np.random.default_rng([int(seed), chain_index, subtask_index])
        return choices[int(rng.integers(len(choices)))]
    return evaluation_instruction(task)


def task_episodes(n: int, seed: int, tasks: list[str] | tuple[str, ...]) -> list[tuple[dict, list[str]]]:
    """``n`` single-subtask episodes as chains of one task: episode ``i`` asks for ``tasks[i % len(tasks)]``
    from a start condition that allows it, drawn with ``seed`` (the per-task success of the paper's
    tables, for a policy trained on a few tasks that CALVIN's 5-task chains would never reach). Raises
    EvaluationError for unknown tasks and for tasks no start condition allows (a block in the hand)."""
    tasks = list(tasks)
    try:
        check_task_names(tasks)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    conditions = {task: conditions_for_task(task) for task in tasks}
    impossible = [task for task, found in conditions.items() if not found]
    if impossible:
        raise EvaluationError(f"no start state allows {', '.join(impossible)} directly (they need a block in the "
                              "hand); evaluate them within chains")
    # A stream of its own (not sample_chains'), so the same seed and tasks give the same episodes.
    rng = np.random.default_rng([int(seed), 7])
    episodes = []
    for i in range(int(n)):
        task = tasks[i % len(tasks)]
        options = conditions[task]
        episodes.append((dict(options[int(rng.integers(len(options)))]), [task]))
    return episodes


def initial_scene(initial_state: dict, seed: int, chain_index: int,
                  backend: str = "embedded") -> tuple[list[float], list[float]]:
    """Concrete (robot_obs, scene_obs) for a chain's symbolic start state on ``backend``, as
    ``reset_scene`` takes it (sim/backends.py: the play table's seeded draw, or CALVIN's own state)."""
    robot_obs, scene_obs = start_state(backend, initial_state, np.random.default_rng(chain_seed(seed, chain_index)))
    return [float(v) for v in robot_obs], [float(v) for v in scene_obs]


@dataclass
class EvaluationConfig:
    """One evaluation run; the fields of a RunEvaluation goal plus how the node counts steps."""

    num_sequences: int
    variant: str = "standard"
    # The budget per subtask, in the protocol's unit (env steps or policy calls); 0: its default
    # (validate() fills it in).
    episode_length: int = 0
    seed: int = 0
    run_name: str = ""
    clock_mode: str = "lockstep"
    # Seconds (wall clock) without any progress (no scene_state, no service answer) before the current
    # subtask is counted as failed, so a dead bridge cannot hang the evaluation.
    stall_timeout: float = 30.0
    # Empty: CALVIN's chains of five. Task ids: ``num_sequences`` single-subtask episodes of these tasks
    # in turn (``task_episodes``), for policies trained on a subset of the 34 tasks.
    tasks: tuple[str, ...] = ()
    # The simulator behind the bridge: whose start states the chains reset to (sim/backends.py).
    backend: str = "embedded"
    # "calvin" (episode_length env steps) or "release" (episode_length policy calls of up to 20
    # open-loop waypoints; lockstep only); sim/protocol.py.
    protocol: str = "calvin"

    def validate(self) -> EvaluationConfig:
        """Normalise (protocol "" -> calvin, episode_length 0 -> the protocol's 360 steps or 60 calls) and
        raise EvaluationError naming the first bad field."""
        if self.variant not in VARIANTS:
            raise EvaluationError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if not isinstance(self.num_sequences, (int, np.integer)) or not 1 <= self.num_sequences <= MAX_SEQUENCES:
            raise EvaluationError(f"num_sequences must be between 1 and {MAX_SEQUENCES}, got {self.num_sequences!r}")
        self.protocol = self.protocol or "calvin"
        if self.protocol not in PROTOCOLS:
            raise EvaluationError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        default, unit = protocol_budget(self.protocol)
        if self.episode_length == 0:
            self.episode_length = default
        if not isinstance(self.episode_length, (int, np.integer)) or self.episode_length < 1:
            raise EvaluationError(f"episode_length must be a positive number of {unit} (0 = the {self.protocol} "
                                  f"protocol's {default}), got {self.episode_length!r}")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
            # numpy's seeding takes no negative numbers, and chain seeds (seed * 100003 + i) must fit
            # ResetScene's int64.
            raise EvaluationError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.clock_mode not in CLOCK_MODES:
            raise EvaluationError(f"unknown clock_mode {self.clock_mode!r}; choose one of {', '.join(CLOCK_MODES)}")
        if self.protocol == "release" and self.clock_mode != "lockstep":
            raise EvaluationError("the release protocol counts policy calls and checks every env step: it needs "
                                  f"clock_mode lockstep, got {self.clock_mode!r}")
        if self.backend not in BACKENDS:
            raise EvaluationError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not self.stall_timeout > 0:
            raise EvaluationError(f"stall_timeout must be > 0 s, got {self.stall_timeout!r}")
        self.tasks = tuple(str(t).strip() for t in self.tasks if str(t).strip())
        if self.tasks:
            task_episodes(1, 0, self.tasks)  # raises EvaluationError naming bad tasks
        if any(c in self.run_name for c in "/\\") or self.run_name in (".", ".."):
            raise EvaluationError(f"run_name must be a plain directory name, got {self.run_name!r}")
        return self

    @property
    def dynamic(self) -> str:
        return dynamic_mode(self.variant)

    @property
    def budget_unit(self) -> str:
        """What episode_length counts: "env steps" or "policy calls"."""
        return protocol_budget(self.protocol)[1]


# ---------------------------------------------------------------------------------------------------
# Commands the node carries out
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResetScene:
    chain_index: int
    robot_obs: list[float]
    scene_obs: list[float]
    seed: int | None  # None: the bridge keeps its own random state


@dataclass(frozen=True)
class PublishInstruction:
    chain_index: int
    subtask_index: int
    task: str
    text: str


@dataclass(frozen=True)
class CheckTasks:
    tasks: list[str]
    start_state: Any  # whatever the node gave as the subtask's start state (a SceneState message)


@dataclass(frozen=True)
class ChainFinished:
    record: ChainRecord


@dataclass(frozen=True)
class RunFinished:
    status: str  # "completed", "cancelled" or "failed"


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------

@dataclass
class SubtaskRecord:
    task: str
    instruction: str
    success: bool = False
    steps: int = 0
    policy_calls: int = 0  # plans the bridge accepted during the subtask (lockstep; 0 in realtime)
    end_tcp: list[float] | None = None  # TCP position (m, world) in the last state checked
    elapsed: float = 0.0  # wall-clock seconds the subtask took
    failure: str | None = None  # why it failed: "timeout after N steps", a service error, a stall


@dataclass
class ChainRecord:
    index: int
    initial_state: dict
    tasks: list[str]
    subtasks: list[SubtaskRecord] = field(default_factory=list)
    failure: str | None = None  # why the chain stopped before its fifth subtask

    @property
    def completed(self) -> int:
        return sum(s.success for s in self.subtasks)

    def to_chain_result(self) -> ChainResult:
        return ChainResult(dict(self.initial_state), list(self.tasks), self.completed,
                           [s.steps for s in self.subtasks])

    def to_dict(self) -> dict:
        return {"index": self.index, "initial_state": self.initial_state, "tasks": self.tasks,
                "completed": self.completed, "failure": self.failure,
                "subtasks": [asdict(s) for s in self.subtasks]}


def _tcp_position(state: Any) -> list[float] | None:
    """robot_obs[:3] of a state that has one (a SceneState, the bridge core's observation), else None."""
    robot_obs = getattr(state, "robot_obs", None)
    try:
        return [float(v) for v in list(robot_obs)[:3]] if robot_obs is not None and len(robot_obs) >= 3 else None
    except TypeError:
        return None


def summarize(records: list[ChainRecord]) -> EvaluationSummary:
    return EvaluationSummary([r.to_chain_result() for r in records])


def per_task_stats(records: list[ChainRecord]) -> dict[str, dict]:
    """task -> attempts, successes, success rate, mean env steps and policy calls of the successes (tasks
    never tried are absent)."""
    stats: dict[str, dict] = {}
    for record in records:
        for subtask in record.subtasks:
            entry = stats.setdefault(subtask.task, {"attempts": 0, "successes": 0, "steps": [], "calls": []})
            entry["attempts"] += 1
            if subtask.success:
                entry["successes"] += 1
                entry["steps"].append(subtask.steps)
                entry["calls"].append(subtask.policy_calls)
    return {task: {"attempts": e["attempts"], "successes": e["successes"],
                   "success_rate": e["successes"] / e["attempts"],
                   "mean_steps_to_success": float(np.mean(e["steps"])) if e["steps"] else None,
                   "mean_policy_calls_to_success": float(np.mean(e["calls"])) if e["calls"] else None}
            for task, e in sorted(stats.items())}


def per_position_stats(records: list[ChainRecord]) -> list[dict]:
    """Per chain position 1..5: how many chains reached it, how many completed it, and the rate of
    completing it given it was reached (the unconditional rate is the summary's success_rates)."""
    rows = []
    for position in range(CHAIN_LENGTH):
        reached = [r for r in records if len(r.subtasks) > position]
        done = sum(r.subtasks[position].success for r in reached)
        rows.append({"position": position + 1, "reached": len(reached), "completed": done,
                     "conditional_rate": done / len(reached) if reached else None})
    return rows


# ---------------------------------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """One chain to run: its symbolic start state, its subtasks, the concrete scene the reset sets, and
    the reset's seed (None: the bridge keeps its own random state)."""

    initial_state: dict
    tasks: list[str]
    robot_obs: list[float]
    scene_obs: list[float]
    seed: int | None


def evaluation_episodes(chains: list[tuple[dict, list[str]]], seed: int, backend: str = "embedded") -> list[Episode]:
    """CALVIN's chains as episodes: each start scene the backend's for the chain's condition (drawn from
    the run's seed and the chain's index on the play table), the reset seed from both."""
    episodes = []
    for index, (initial_state, tasks) in enumerate(chains):
        robot_obs, scene_obs = initial_scene(initial_state, seed, index, backend)
        episodes.append(Episode(dict(initial_state), list(tasks), robot_obs, scene_obs, chain_seed(seed, index)))
    return episodes


class EvaluationRun:
    """One RunEvaluation goal, from the first reset to the last chain (or a cancel).

    The episode loop of every verb that runs chains through the graph: the evaluator, and ``openhelix
    collect`` with its own ``episodes`` (start states of its choosing, no reset seed) and
    ``instruction`` (a text from the training language set: ``instruction(chain, position, task)``).
    """

    IDLE, RESETTING, RUNNING, DONE = "idle", "resetting", "running", "done"

    def __init__(self, config: EvaluationConfig, chains: list[tuple[dict, list[str]]] | None = None,
                 episodes: list[Episode] | None = None, instruction=None):
        self.config = config.validate()
        if episodes is None:
            if chains is None:
                chains = (task_episodes(self.config.num_sequences, self.config.seed, self.config.tasks)
                          if self.config.tasks else sample_chains(self.config.num_sequences, self.config.seed))
            episodes = evaluation_episodes(chains, self.config.seed, self.config.backend)
        self.episodes = list(episodes)
        self._instruction = instruction or (lambda chain, position, task: instruction_for(
            self.config.variant, task, self.config.seed, chain, position))
        self.records: list[ChainRecord] = []
        self.current: ChainRecord | None = None
        self.interrupted: ChainRecord | None = None  # the chain a cancel cut short
        self.state = self.IDLE
        self.status: str | None = None  # "completed", "cancelled" or "failed" once done
        self.failure: str | None = None  # why a failed run could not go on
        self.started_at: float | None = None
        self._start_state: Any = None
        self._start_step = 0
        self._start_plans = 0
        self._messages = 0  # scene_state messages since the subtask began (realtime step count)
        self._subtask_started = 0.0
        self._check_in_flight = False
        self._check_pending = False
        self._last_progress = 0.0

    # -- queries -------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state == self.DONE

    @property
    def chains(self) -> list[tuple[dict, list[str]]]:
        """The (start state, subtasks) of every episode, in order."""
        return [(episode.initial_state, episode.tasks) for episode in self.episodes]

    @property
    def chain_index(self) -> int:
        return len(self.records)

    @property
    def start_state(self) -> Any:
        """The state the current subtask started from, as the node gave it (the reset's for subtask 0)."""
        return self._start_state

    @property
    def subtask_index(self) -> int:
        return len(self.current.subtasks) - 1 if self.current and self.current.subtasks else 0

    @property
    def current_subtask(self) -> SubtaskRecord | None:
        return self.current.subtasks[-1] if self.current and self.current.subtasks else None

    def summary(self) -> EvaluationSummary:
        return summarize(self.records)

    # -- events --------------------------------------------------------------------------------
    def start(self, now: float) -> list:
        if self.state != self.IDLE:
            raise RuntimeError("the run has already started")
        self.started_at = now
        return self._begin_chain(now)

    def on_reset_done(self, now: float, ok: bool, state: Any = None, message: str = "",
                      step: int = 0, plans: int = 0) -> list:
        """The answer of ``reset_scene``: on success ``state`` is the chain's start state (``step`` and
        ``plans`` its SceneState counters)."""
        if self.state != self.RESETTING:
            return []
        self._last_progress = now
        if not ok:
            self.current.failure = f"reset_scene failed: {message or 'no reason given'}"
            return self._finish_chain(now)
        self.state = self.RUNNING
        return self._begin_subtask(now, state, step, plans)

    def on_scene_state(self, now: float, step: int) -> list:
        """A ``scene_state`` arrived; returns a CheckTasks unless one is already in flight."""
        if self.state != self.RUNNING:
            return []
        self._last_progress = now
        self._messages += 1
        if self._check_in_flight:
            self._check_pending = True
            return []
        return self._check()

    def on_check_result(self, now: float, ok: bool, completed: list[str] | None = None,
                        current_state: Any = None, current_step: int | None = None, message: str = "",
                        current_plans: int | None = None) -> list:
        """The answer of ``check_tasks``; ``current_step`` and ``current_plans`` are ``current_state.step``
        and ``.plans`` (the lockstep counts)."""
        if self.state != self.RUNNING or not self._check_in_flight:
            return []
        self._check_in_flight = False
        self._last_progress = now
        subtask = self.current_subtask
        if not ok:
            return self._fail_subtask(now, f"check_tasks failed: {message or 'no reason given'}")
        steps = self._steps(current_step)
        calls = max(0, int(current_plans) - self._start_plans) if current_plans is not None else 0
        release = self.config.protocol == "release"
        if release and calls > self.config.episode_length:
            # This state came from a call past the budget, which the released loop never makes: the
            # subtask keeps the steps of the last state checked within it (every state is checked: the
            # bridge's CheckGate), i.e. of the budget's last waypoint.
            subtask.policy_calls = self.config.episode_length
            return self._fail_subtask(now, f"not completed within {self.config.episode_length} policy calls")
        subtask.steps = steps
        subtask.policy_calls = calls
        subtask.end_tcp = _tcp_position(current_state)
        if subtask.task in (completed or []):
            subtask.success = True
            subtask.elapsed = now - self._subtask_started
            if len(self.current.subtasks) == len(self.current.tasks):
                return self._finish_chain(now)
            # CALVIN: the next subtask starts from the state the last check compared. A state that came
            # while that check was out is checked at once, for the new subtask: a bridge holding each
            # state until it is checked (its CheckGate) would otherwise wait for a check that never comes.
            came_meanwhile = self._check_pending
            commands = self._begin_subtask(now, current_state, current_step if current_step is not None else 0,
                                           current_plans if current_plans is not None else 0)
            return commands + self._check() if came_meanwhile else commands
        if not release and steps >= self.config.episode_length:
            return self._fail_subtask(now, f"not completed within {self.config.episode_length} steps")
        if self._check_pending:
            return self._check()
        return []

    def on_tick(self, now: float) -> list:
        """Called periodically: fails the run when nothing happened for ``stall_timeout`` s."""
        if self.state not in (self.RESETTING, self.RUNNING) or now - self._last_progress < self.config.stall_timeout:
            return []
        reason = (f"no answer from reset_scene for {self.config.stall_timeout:g} s" if self.state == self.RESETTING
                  else f"no scene_state or check_tasks answer for {self.config.stall_timeout:g} s")
        return self.fail(now, f"the bridge stopped answering (or, in lockstep, the policy it waits for): {reason}")

    def fail(self, now: float, reason: str) -> list:
        """The run cannot go on (the bridge died, or stopped answering): it ends now as ``failed``. The
        chains already done are kept, the one in progress is kept as ``interrupted``, and no score is
        reported for the run (a dead bridge must never read as a policy that failed every chain)."""
        if self.finished:
            return []
        self.interrupted = self.current
        self.current = None
        self._check_in_flight = False  # a late answer to an abandoned call is ignored
        self.state = self.DONE
        self.status = "failed"
        self.failure = reason
        return [RunFinished("failed")]

    def give_up(self, now: float, reason: str) -> list:
        """Fail the subtask in progress now (a person ended the demonstration, say); the chain ends."""
        if self.state != self.RUNNING:
            return []
        self._check_in_flight = False  # a late answer to a check in flight is ignored
        return self._fail_subtask(now, reason)

    def cancel(self, now: float) -> list:
        """Stop now. The chain in progress is dropped from the statistics (it did not finish) but
        kept as ``interrupted`` for the results file."""
        if self.finished:
            return []
        self.interrupted = self.current
        self.current = None
        self.state = self.DONE
        self.status = "cancelled"
        return [RunFinished("cancelled")]

    # -- internals -----------------------------------------------------------------------------
    def _steps(self, current_step: int | None) -> int:
        if self.config.clock_mode == "realtime" or current_step is None:
            return self._messages
        return max(0, int(current_step) - self._start_step)

    def _check(self) -> list:
        self._check_in_flight = True
        self._check_pending = False
        return [CheckTasks([self.current_subtask.task], self._start_state)]

    def _begin_chain(self, now: float) -> list:
        index = self.chain_index
        if index >= len(self.episodes):
            self.state = self.DONE
            self.status = "completed"
            return [RunFinished("completed")]
        episode = self.episodes[index]
        self.current = ChainRecord(index, dict(episode.initial_state), list(episode.tasks))
        self.state = self.RESETTING
        self._last_progress = now
        return [ResetScene(index, list(episode.robot_obs), list(episode.scene_obs), episode.seed)]

    def _begin_subtask(self, now: float, start_state: Any, start_step: int, start_plans: int = 0) -> list:
        position = len(self.current.subtasks)
        task = self.current.tasks[position]
        text = self._instruction(self.current.index, position, task)
        self.current.subtasks.append(SubtaskRecord(task, text))
        self._start_state, self._start_step, self._start_plans = start_state, int(start_step), int(start_plans)
        self._messages = 0
        self._subtask_started = now
        self._check_in_flight = self._check_pending = False
        return [PublishInstruction(self.current.index, position, task, text)]

    def _fail_subtask(self, now: float, reason: str) -> list:
        subtask = self.current_subtask
        subtask.success = False
        subtask.failure = reason
        subtask.elapsed = now - self._subtask_started
        if subtask.steps == 0 and self.config.clock_mode == "realtime":
            subtask.steps = self._messages
        self.current.failure = f"subtask {len(self.current.subtasks)} ({subtask.task}): {reason}"
        return self._finish_chain(now)

    def _finish_chain(self, now: float) -> list:
        record = self.current
        self.records.append(record)
        self.current = None
        return [ChainFinished(record), *self._begin_chain(now)]


# ---------------------------------------------------------------------------------------------------
# Timing of the two systems, and latent age
# ---------------------------------------------------------------------------------------------------

def describe(values) -> dict:
    """count, mean, p50, p90, p99, min, max of a sample (None for an empty one)."""
    data = np.asarray(list(values), dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "min": None, "max": None}
    return {"count": int(data.size), "mean": float(data.mean()), "p50": float(np.percentile(data, 50)),
            "p90": float(np.percentile(data, 90)), "p99": float(np.percentile(data, 99)),
            "min": float(data.min()), "max": float(data.max())}


# Raw samples kept in results.json (for plots made later from the file alone) are thinned to this many,
# evenly over the run: a 1000-chain run has about a million trajectories.
MAX_SAMPLES = 5000


def thin(values, limit: int = MAX_SAMPLES) -> list[float]:
    values = list(values)
    if len(values) <= limit:
        return [float(v) for v in values]
    return [float(values[i]) for i in np.linspace(0, len(values) - 1, limit).round().astype(int)]


class StreamStats:
    """Arrivals and inference times of one message stream (goal latents or trajectories)."""

    def __init__(self) -> None:
        self.received: list[float] = []
        self.inference_times: list[float] = []

    def add(self, received: float, inference_time: float) -> None:
        self.received.append(float(received))
        if math.isfinite(inference_time) and inference_time >= 0:
            self.inference_times.append(float(inference_time))

    @property
    def rate(self) -> float | None:
        """Messages per second between the first and the last arrival."""
        if len(self.received) < 2 or self.received[-1] <= self.received[0]:
            return None
        return (len(self.received) - 1) / (self.received[-1] - self.received[0])

    def to_dict(self) -> dict:
        return {"messages": len(self.received), "rate_hz": self.rate,
                "inference_time_s": describe(self.inference_times),
                "inference_time_samples_s": thin(self.inference_times)}


class TimingCollector:
    """System 1 / System 2 rates and latencies, and latent age.

    Latent age (docs/ros_graph.md) = trajectory ``header.stamp`` (the observation System 1 planned
    from) - ``observation_stamp`` of the latent it used. A trajectory names its latent by
    ``latent_sequence``; the latent's observation stamp comes from the ``goal_latent`` stream, so the
    newest ``max_latents`` latents are remembered. Trajectories without a latent (sequence 0, the
    scripted expert) or whose latent was never seen are counted, not measured.
    """

    def __init__(self, control_rate: float = 30.0, max_latents: int = 1000):
        self.control_rate = float(control_rate)
        self.max_latents = int(max_latents)
        self.system1 = StreamStats()
        self.system2 = StreamStats()
        self.latent_ages: list[float] = []  # seconds of the active clock
        self.without_latent = 0
        self.unknown_latent = 0
        self._observation_stamps: OrderedDict[int, int] = OrderedDict()
        # "<tokens>x<width>+<coarse actions>" -> how many goal latents of that shape were published
        self.latent_shapes: dict[str, int] = {}

    def on_goal_latent(self, received: float, sequence: int, observation_stamp_ns: int,
                       inference_time: float, shape: tuple[int, int, int] | None = None) -> None:
        """``shape``: the goal's (tokens, token width, coarse actions) as this process read it."""
        self.system2.add(received, inference_time)
        self.remember_latent(sequence, observation_stamp_ns)
        if shape is not None:
            key = f"{shape[0]}x{shape[1]}+{shape[2]}"
            self.latent_shapes[key] = self.latent_shapes.get(key, 0) + 1

    def remember_latent(self, sequence: int, observation_stamp_ns: int) -> None:
        """Know a latent's observation stamp without counting it (one received before the run began,
        which the first trajectories of the run still use)."""
        self._observation_stamps[int(sequence)] = int(observation_stamp_ns)
        self._observation_stamps.move_to_end(int(sequence))
        while len(self._observation_stamps) > self.max_latents:
            self._observation_stamps.popitem(last=False)

    def on_trajectory(self, received: float, stamp_ns: int, latent_sequence: int, inference_time: float) -> None:
        self.system1.add(received, inference_time)
        if latent_sequence == 0:
            self.without_latent += 1
            return
        observation = self._observation_stamps.get(int(latent_sequence))
        if observation is None:
            self.unknown_latent += 1
            return
        self.latent_ages.append((int(stamp_ns) - observation) * 1e-9)

    def to_dict(self) -> dict:
        steps = [round(age * self.control_rate) for age in self.latent_ages]
        return {"control_rate": self.control_rate,
                "latent_age_s": describe(self.latent_ages), "latent_age_steps": describe(steps),
                "latent_age_samples_s": thin(self.latent_ages),
                "trajectories_without_latent": self.without_latent,
                "trajectories_with_unseen_latent": self.unknown_latent,
                "goal_latent_shapes": dict(self.latent_shapes),
                "system1": self.system1.to_dict(), "system2": self.system2.to_dict()}
