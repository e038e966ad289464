"""evaluator: CALVIN's evaluation protocol through the ROS graph, as the ``run_evaluation`` action.

Per goal (openhelix_msgs/action/RunEvaluation), once the bridge's services are up and a policy and the
instruction subscribers are discovered, it runs ``evaluation.core.EvaluationRun``: calls the
bridge's ``reset_scene`` with each chain's initial scene, publishes one ``instruction`` per subtask,
calls ``check_tasks`` (against the state at the subtask's start) after each ``scene_state``, and stops
a chain at its first failure. For ``dynamic-*`` variants it first sets the bridge's ``dynamic``
parameter through ``<bridge_name>/set_parameters`` and sets it back to "" afterwards. Meanwhile it
listens to ``goal_latent`` and ``ee_trajectory`` for System 1 / System 2 rates, latencies and latent
age. Feedback after every chain; ``evaluation/progress`` (EvaluationProgress) at every subtask start and
chain end; ``runs_dir/<run_name>/`` gets results.json, report.md and plots at the end, also when the
goal is cancelled (partial results) or the node is stopped mid-run.

Threads: the action's execute callback is one long loop (its own mutually exclusive group); messages
and service answers arrive on a reentrant group and only put events in a queue the loop reads, so a
running evaluation never blocks a subscription or a service response. That needs a
MultiThreadedExecutor (``run_node(..., threads=4)``); at shutdown ``wind_down`` lets a running goal
write its partial results and send its result while the executor still spins.

Parameters: ``bridge_name``, ``runs_dir``, ``clock_mode``, ``control_rate``, ``latent_period_steps``
(recorded only), ``service_timeout``, ``graph_timeout``, ``stall_timeout``; see PARAMETERS.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openhelix_msgs.action import RunEvaluation
from openhelix_msgs.msg import EETrajectory, EvaluationProgress, GoalLatent, Instruction, SceneState
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import stamp_to_ns
from openhelix_ros.common.node_utils import (
    INSTRUCTION_PUBLISHER_QOS,
    LATENT_QOS,
    SCENE_STATE_QOS,
    declare_parameters,
    run_node,
)
from openhelix_ros.evaluation.core import (
    CLOCK_MODES,
    ChainFinished,
    EvaluationConfig,
    EvaluationError,
    EvaluationRun,
    PublishInstruction,
    RunFinished,
    TimingCollector,
)
from openhelix_ros.evaluation.core import CheckTasks as CheckCommand
from openhelix_ros.evaluation.core import ResetScene as ResetCommand
from openhelix_ros.evaluation.parameters import PARAMETERS
from openhelix_ros.evaluation.report import build_results, write_report

PROGRESS_TOPIC = graph.EVALUATION_PROGRESS
RECENT_LATENTS = 100
GRAPH_SETTLE = 0.5  # s the graph must stay complete before the first instruction (endpoints appear one by one)
RESULT_GRACE = 1.0  # s of spinning at shutdown after a goal ended, for its result to reach the client


# Progress is for people and logs: reliable, a small backlog, nothing replayed to late joiners.
PROGRESS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
# Trajectories are only counted and timed here, so every one matters: the publisher's reliable
# volatile profile, but a deeper queue than System 1's keep-last 1 so a busy moment drops none.
TRAJECTORY_COUNT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                                  reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class Evaluator(Node):
    def __init__(self) -> None:
        super().__init__("evaluator")
        self.params = declare_parameters(self, PARAMETERS)
        if self.params["clock_mode"] not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {self.params['clock_mode']!r}")
        bridge = self.params["bridge_name"].rstrip("/")
        if not bridge:
            raise ValueError("bridge_name must not be empty")
        self._runs_dir = Path(self.params["runs_dir"])
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._busy = False
        self._stopping = threading.Event()
        self._timing: TimingCollector | None = None  # set while a run listens
        # Latents seen while no run listens: the first trajectories of a run use one of them (and a
        # transient-local latent arrives once, at subscription), so their age is still measurable.
        self._recent_latents: OrderedDict[int, int] = OrderedDict()
        self._instruction_sequence = 0
        self._request_id = 0  # tags service calls so a late answer to an abandoned call is ignored
        self._wall_clock = Clock(clock_type=ClockType.SYSTEM_TIME)

        io = ReentrantCallbackGroup()
        self._instruction_pub = self.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        self._progress_pub = self.create_publisher(EvaluationProgress, PROGRESS_TOPIC, PROGRESS_QOS)
        self.create_subscription(SceneState, graph.SCENE_STATE, self._on_scene_state, SCENE_STATE_QOS,
                                 callback_group=io)
        self.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_goal_latent, LATENT_QOS, callback_group=io)
        self.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_trajectory, TRAJECTORY_COUNT_QOS,
                                 callback_group=io)
        self._reset_client = self.create_client(ResetScene, graph.RESET_SCENE, callback_group=io)
        self._check_client = self.create_client(CheckTasks, graph.CHECK_TASKS, callback_group=io)
        self._parameter_client = self.create_client(SetParameters, f"{bridge}/set_parameters", callback_group=io)
        self._server = ActionServer(
            self, RunEvaluation, graph.RUN_EVALUATION, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"ready: action {self.resolve_topic_name(graph.RUN_EVALUATION)}, bridge "
                               f"{bridge}, results under {self._runs_dir.resolve()}")

    # -- goal handling -------------------------------------------------------------------------
    def config_from_goal(self, goal: RunEvaluation.Goal) -> EvaluationConfig:
        # An empty variant is a client that left the field at its default: CALVIN's standard protocol.
        return EvaluationConfig(num_sequences=int(goal.num_sequences), variant=goal.variant or "standard",
                                episode_length=int(goal.episode_length), seed=int(goal.seed),
                                run_name=goal.run_name, clock_mode=self.params["clock_mode"],
                                stall_timeout=float(self.get_parameter("stall_timeout").value),
                                tasks=tuple(goal.tasks)).validate()

    def _on_goal(self, goal: RunEvaluation.Goal) -> GoalResponse:
        try:
            self.config_from_goal(goal)
        except EvaluationError as error:
            self.get_logger().error(f"rejected evaluation goal: {error}")
            return GoalResponse.REJECT
        with self._lock:
            if self._busy or self._stopping.is_set():
                self.get_logger().error("rejected evaluation goal: an evaluation is already running")
                return GoalResponse.REJECT
            self._busy = True
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> RunEvaluation.Result:
        try:
            return self._evaluate(goal_handle)
        except Exception as error:  # never leave a goal hanging, never take the node down
            self.get_logger().error(f"evaluation failed: {error!r}")
            goal_handle.abort()
            return RunEvaluation.Result(success=False, message=f"evaluation failed: {error!r}")
        finally:
            self._timing = None
            with self._lock:
                self._busy = False

    def _evaluate(self, goal_handle) -> RunEvaluation.Result:
        config = self.config_from_goal(goal_handle.request)
        run_name = config.run_name = config.run_name or time.strftime("eval-%Y%m%d-%H%M%S")
        directory = self._runs_dir / run_name
        started = time.time()
        log = self.get_logger()
        episodes = f"single-subtask episodes of {', '.join(config.tasks)}" if config.tasks else "chains"
        log.info(f"evaluation {run_name!r}: {config.num_sequences} {episodes}, {config.variant}, "
                 f"{config.episode_length} steps per subtask, seed {config.seed}")
        timeout = float(self.get_parameter("service_timeout").value)
        for client in (self._reset_client, self._check_client):
            if not client.wait_for_service(timeout_sec=timeout):
                return self._abort(goal_handle, f"bridge service {self._full_name(client)} not available after "
                                                f"{timeout:g} s")
        gaps = self._wait_for_graph(goal_handle, float(self.get_parameter("graph_timeout").value))
        if gaps:
            self.get_logger().warning(f"starting without a complete graph: {'; '.join(gaps)}")
        if config.dynamic:
            problem = self._set_dynamic(config.dynamic, timeout)
            if problem:
                return self._abort(goal_handle, f"cannot set the bridge to CALVIN-D {config.dynamic!r}: {problem}")
        run = EvaluationRun(config)
        timing = TimingCollector(control_rate=self.params["control_rate"])
        with self._lock:
            for sequence, observation in self._recent_latents.items():
                timing.remember_latent(sequence, observation)
        while not self._events.empty():  # nothing from before this run may count
            self._events.get_nowait()
        self._timing = timing
        message = ""
        try:
            pending = list(run.start(time.monotonic()))
            while True:
                while pending:
                    pending.extend(self._carry_out(pending.pop(0), run, goal_handle, started))
                if run.finished:
                    break
                if goal_handle.is_cancel_requested or self._stopping.is_set():
                    message = "cancelled by the client" if goal_handle.is_cancel_requested else "node shut down"
                    pending.extend(run.cancel(time.monotonic()))
                    continue
                try:
                    event = self._events.get(timeout=0.05)
                except queue.Empty:
                    pending.extend(run.on_tick(time.monotonic()))
                    continue
                pending.extend(self._dispatch(run, event))
        finally:
            self._timing = None
            if config.dynamic:
                problem = self._set_dynamic("", timeout)
                if problem:
                    log.warning(f"could not set the bridge's 'dynamic' back to '': {problem}")
        summary = run.summary()
        with self._lock:  # a subscription callback may still hold the collector it read before
            results = build_results(run, timing, run_name=run_name, started=started, status=run.status,
                                    message=message, parameters=self._recorded_parameters())
        result = RunEvaluation.Result(success=True, success_rates=[float(r) for r in summary.success_rates],
                                      average_length=float(summary.average_length),
                                      num_sequences_done=len(run.records))
        try:
            paths = write_report(results, directory)
            result.results_path = str(paths["results"].parent.resolve())
        except (OSError, ValueError) as error:  # a full disk must not lose the numbers: they go back in the result
            log.error(f"could not write the results to {directory}: {error}")
            result.success, result.message = False, f"ran, but could not write results: {error}"
        rates = " ".join(f"{r:.2f}" for r in summary.success_rates)
        if result.success:
            result.message = f"{run.status}: {len(run.records)} chains, avg. len {summary.average_length:.2f}"
        log.info(f"evaluation {run_name!r} {run.status}: success rates {rates}, avg. len "
                 f"{summary.average_length:.2f}, results in {result.results_path or '(not written)'}")
        if run.status == "cancelled" and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success and run.status == "completed":
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def graph_gaps(self) -> list[str]:
        """What the graph still lacks before the first instruction may go out (empty: ready).

        A policy must publish ee_trajectory; if something consumes goal_latent (System 1), a System 2
        must publish it; every discovered subscriber of instruction must be matched to our publisher. A
        subscriber that matches after an instruction went out misses it unless it is transient local
        (System 2 and the scripted expert subscribe volatile), and a missed first instruction fails the
        chain for nothing. Models load for a minute or more, so a graph started together with the
        evaluator is usually not complete when the first goal arrives."""
        gaps = []
        if not self.count_publishers(graph.EE_TRAJECTORY):
            gaps.append(f"no policy publishes {graph.EE_TRAJECTORY}")
        # Our own goal_latent subscription (for timing) does not count as a consumer.
        consumers = [info for info in self.get_subscriptions_info_by_topic(self.resolve_topic_name(graph.GOAL_LATENT))
                     if (info.node_name, info.node_namespace) != (self.get_name(), self.get_namespace())]
        if consumers and not self.count_publishers(graph.GOAL_LATENT):
            gaps.append(f"{graph.GOAL_LATENT} has subscribers but no publisher (System 2 not up)")
        listeners = self.count_subscribers(graph.INSTRUCTION)
        matched = self._instruction_pub.get_subscription_count()
        if not listeners or matched < listeners:
            gaps.append(f"{matched} of {listeners} {graph.INSTRUCTION} subscriber(s) matched")
        return gaps

    def _wait_for_graph(self, goal_handle, timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for ``graph_gaps()`` to close and stay closed for GRAPH_SETTLE s
        (a node creates its endpoints one after the other); returns the gaps left. Logs what it waits
        for every 10 s; a cancel or shutdown ends the wait."""
        started = time.monotonic()
        said = started
        settled_since = None
        while not goal_handle.is_cancel_requested and not self._stopping.is_set():
            now = time.monotonic()
            gaps = self.graph_gaps()
            if gaps:
                settled_since = None
            elif settled_since is None:
                settled_since = now
            elif now - settled_since >= GRAPH_SETTLE:
                return []
            if now - started >= timeout:
                return gaps
            if gaps and now - said >= 10.0:
                said = now
                self.get_logger().info(f"waiting for the graph ({now - started:.0f} s): {'; '.join(gaps)}")
            time.sleep(0.05)
        return []

    def _full_name(self, client) -> str:
        return self.resolve_service_name(client.srv_name)

    def _abort(self, goal_handle, message: str) -> RunEvaluation.Result:
        self.get_logger().error(f"evaluation not run: {message}")
        goal_handle.abort()
        return RunEvaluation.Result(success=False, message=message)

    def _recorded_parameters(self) -> dict:
        return {name: self.get_parameter(name).value for name in
                ("bridge_name", "runs_dir", "control_rate", "latent_period_steps", "service_timeout",
                 "graph_timeout")}

    # -- commands of the core ------------------------------------------------------------------
    def _carry_out(self, command, run: EvaluationRun, goal_handle, started: float) -> list:
        """Carry out one command; returns follow-up commands (from a call that failed at once)."""
        if isinstance(command, ResetCommand):
            request = ResetScene.Request(robot_obs=command.robot_obs, scene_obs=command.scene_obs,
                                         use_seed=True, seed=command.seed)
            return self._call(self._reset_client, request, "reset", run)
        if isinstance(command, CheckCommand):
            request = CheckTasks.Request(tasks=list(command.tasks), start_state=command.start_state)
            return self._call(self._check_client, request, "check", run)
        if isinstance(command, PublishInstruction):
            self._instruction_sequence += 1
            message = Instruction(text=command.text, task=command.task, sequence=self._instruction_sequence)
            message.header.stamp = self.get_clock().now().to_msg()
            self._instruction_pub.publish(message)
            self._progress_pub.publish(self._progress(run, started, command.subtask_index, command.task,
                                                      command.text))
            return []
        if isinstance(command, ChainFinished):
            record = command.record
            last = record.subtasks[-1] if record.subtasks else None
            progress = self._progress(run, started, len(record.subtasks) - 1 if last else 0,
                                      last.task if last else "", last.instruction if last else "",
                                      chain_index=record.index, completed=record.completed)
            self._progress_pub.publish(progress)
            goal_handle.publish_feedback(RunEvaluation.Feedback(progress=progress, chain_tasks=list(record.tasks),
                                                                chain_completed=record.completed))
            self.get_logger().info(f"chain {record.index + 1}/{run.config.num_sequences}: "
                                   f"{record.completed}/{len(record.tasks)}"
                                   + (f" ({record.failure})" if record.failure else ""))
            return []
        if isinstance(command, RunFinished):
            return []
        raise TypeError(f"unknown command {command!r}")

    def _call(self, client, request, kind: str, run: EvaluationRun) -> list:
        self._request_id += 1
        request_id = self._request_id
        timeout = float(self.get_parameter("service_timeout").value)
        if not client.service_is_ready() and not client.wait_for_service(timeout_sec=timeout):
            # Counted as that call failing: the core records why and moves on to the next chain. The
            # wait gives a restarting bridge its chance and keeps a dead one from failing a thousand
            # chains in a second.
            return self._dispatch(run, (kind, request_id, None, f"service {self._full_name(client)} not available"))
        future = client.call_async(request)
        future.add_done_callback(lambda f: self._events.put(
            (kind, request_id, f.result() if f.exception() is None else None,
             "" if f.exception() is None else repr(f.exception()))))
        return []

    def _dispatch(self, run: EvaluationRun, event) -> list:
        now = time.monotonic()
        kind = event[0]
        if kind == "scene_state":
            return run.on_scene_state(now, event[1])
        _, request_id, response, error = event
        if request_id != self._request_id:
            return []  # the answer to a call the run already gave up on
        if response is None:
            self.get_logger().error(f"{kind} call failed: {error}")
            ok, message = False, error
        else:
            ok, message = bool(response.success), response.message
            if not ok:
                self.get_logger().error(f"{kind} answered failure: {message}")
        if kind == "reset":
            state = response.state if response is not None else None
            return run.on_reset_done(now, ok, state, message, step=int(state.step) if state is not None else 0)
        state = response.current_state if response is not None else None
        return run.on_check_result(now, ok, list(response.completed) if response is not None else [], state,
                                   int(state.step) if state is not None else None, message)

    def _progress(self, run: EvaluationRun, started: float, subtask_index: int, task: str, instruction: str,
                  chain_index: int | None = None, completed: int | None = None) -> EvaluationProgress:
        summary = run.summary()
        message = EvaluationProgress(
            run_name=run.config.run_name, variant=run.config.variant,
            chain_index=run.chain_index if chain_index is None else chain_index,
            num_chains=run.config.num_sequences, subtask_index=max(0, subtask_index), task=task,
            instruction=instruction,
            completed_in_chain=(run.current.completed if run.current else 0) if completed is None else completed,
            success_rates=[float(r) for r in summary.success_rates], average_length=float(summary.average_length),
            elapsed=float(time.time() - started))
        message.header.stamp = self._wall_clock.now().to_msg()  # EvaluationProgress: wall clock, even in sim time
        return message

    def _set_dynamic(self, mode: str, timeout: float) -> str | None:
        """Set the bridge's ``dynamic`` parameter; None on success, else what went wrong."""
        client = self._parameter_client
        if not client.wait_for_service(timeout_sec=timeout):
            return f"{self._full_name(client)} not available after {timeout:g} s"
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=mode)
        future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name="dynamic", value=value)]))
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            return f"no answer from {self._full_name(client)} within {timeout:g} s"
        if future.exception() is not None:
            return repr(future.exception())
        [outcome] = future.result().results
        return None if outcome.successful else (outcome.reason or "the bridge refused without a reason")

    # -- subscriptions (reentrant group; they only record or queue) -------------------------------
    def _on_scene_state(self, message: SceneState) -> None:
        if self._timing is not None:
            self._events.put(("scene_state", int(message.step)))

    def _on_goal_latent(self, message: GoalLatent) -> None:
        timing = self._timing
        with self._lock:
            if timing is not None:
                timing.on_goal_latent(time.monotonic(), int(message.sequence), stamp_to_ns(message.observation_stamp),
                                      float(message.inference_time))
            else:
                self._recent_latents[int(message.sequence)] = stamp_to_ns(message.observation_stamp)
                while len(self._recent_latents) > RECENT_LATENTS:
                    self._recent_latents.popitem(last=False)

    def _on_trajectory(self, message: EETrajectory) -> None:
        timing = self._timing
        if timing is not None:
            with self._lock:
                timing.on_trajectory(time.monotonic(), stamp_to_ns(message.header.stamp),
                                     int(message.latent_sequence), float(message.inference_time))

    # -- shutdown ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy

    def close(self) -> None:
        """Ask a running evaluation to stop; it writes its partial results and ends its goal."""
        self._stopping.set()

    def wind_down(self) -> None:
        """Called by run_node at shutdown while the executor still spins: stop a running goal and give it
        the time to write its partial results, end, and (a moment more, after its execute callback
        returned) send its result to the client."""
        was_busy = self.busy
        self.close()
        deadline = time.monotonic() + 10.0
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        if was_busy:
            time.sleep(RESULT_GRACE)


def main(args: list[str] | None = None) -> int:
    # Threads: the execute loop, plus answers and messages arriving while it runs.
    return run_node(Evaluator, args if args is not None else sys.argv, threads=4)


if __name__ == "__main__":
    sys.exit(main())
