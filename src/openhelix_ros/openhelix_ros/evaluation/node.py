"""evaluator: CALVIN's evaluation protocol through the ROS graph, as the ``run_evaluation`` action.

Per goal (openhelix_msgs/action/RunEvaluation), once the bridge's services are up and a policy and the
instruction subscribers are discovered (evaluation/readiness.py), it runs ``evaluation.core.EvaluationRun``
(evaluation/goal.py carries out its commands): calls the
bridge's ``reset_scene`` with each chain's initial scene, publishes one ``instruction`` per subtask,
calls ``check_tasks`` (against the state at the subtask's start) after each ``scene_state``, and stops
a chain at its first failure. For ``dynamic-*`` variants it first sets the bridge's ``dynamic``
parameter through ``<bridge_name>/set_parameters`` and sets it back to "" afterwards; for the
``release`` protocol (sim/protocol.py) likewise its ``protocol``, and it reads the bridge's position
clip for the report. Meanwhile it
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

import itertools
import math
import queue
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from openhelix_msgs.action import RunEvaluation
from openhelix_msgs.msg import EETrajectory, EvaluationProgress, GoalLatent, Instruction, SceneState
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import goal_latent_from_msg, stamp_to_ns
from openhelix_ros.common.health import ERROR, OK, WARN, NodeHealth
from openhelix_ros.common.node_utils import (
    INSTRUCTION_PUBLISHER_QOS,
    LATENT_SUBSCRIBER_QOS,
    PROGRESS_QOS,
    SCENE_STATE_QOS,
    TRAJECTORY_COUNT_QOS,
    declare_parameters,
    run_node,
    start_diagnostics,
)
from openhelix_ros.common.timing import RepeatLimiter
from openhelix_ros.evaluation.core import (
    CLOCK_MODES,
    EvaluationConfig,
    EvaluationError,
    TimingCollector,
)
from openhelix_ros.evaluation.filming import Filming
from openhelix_ros.evaluation.goal import GoalExecution
from openhelix_ros.evaluation.parameters import PARAMETERS
from openhelix_ros.evaluation.readiness import GraphCounts
from openhelix_ros.sim.backends import BACKENDS

PROGRESS_TOPIC = graph.EVALUATION_PROGRESS
RECENT_LATENTS = 100
RESULT_GRACE = 1.0  # s of spinning at shutdown after a goal ended, for its result to reach the client


class Evaluator(Node):
    def __init__(self) -> None:
        super().__init__("evaluator")
        self.params = declare_parameters(self, PARAMETERS)
        if self.params["clock_mode"] not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {self.params['clock_mode']!r}")
        if self.params["backend"] not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.params['backend']!r}")
        bridge = self.params["bridge_name"].rstrip("/")
        if not bridge:
            raise ValueError("bridge_name must not be empty")
        # Public: a goal's GoalExecution (evaluation/goal.py) runs over these endpoints and this state.
        self.runs_dir = Path(self.params["runs_dir"])
        self.events: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self._busy = False
        self.stopping = threading.Event()
        self.timing: TimingCollector | None = None  # set while a run listens
        # Latents seen while no run listens: the first trajectories of a run use one of them (and a
        # transient-local latent arrives once, at subscription), so their age is still measurable.
        self.recent_latents: OrderedDict[int, int] = OrderedDict()
        self.instruction_sequences = itertools.count(1)
        # Tags service calls so a late answer to an abandoned call (of this goal or an earlier one) is ignored.
        self.request_ids = itertools.count(1)
        self.wall_clock = Clock(clock_type=ClockType.SYSTEM_TIME)

        # /diagnostics: what it hears, and whether an evaluation runs (and how the last one ended).
        self.health = NodeHealth(self.get_name())
        self.drop_log = RepeatLimiter()
        self.health.set_value("evaluation", "idle")
        start_diagnostics(self, self.health)

        io = ReentrantCallbackGroup()
        self.instruction_pub = self.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        self.progress_pub = self.create_publisher(EvaluationProgress, PROGRESS_TOPIC, PROGRESS_QOS)
        self.create_subscription(SceneState, graph.SCENE_STATE, self._on_scene_state, SCENE_STATE_QOS,
                                 callback_group=io)
        self.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_goal_latent, LATENT_SUBSCRIBER_QOS, callback_group=io)
        self.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_trajectory, TRAJECTORY_COUNT_QOS,
                                 callback_group=io)
        self.filming = Filming(self, self.lock, io)  # the static camera, for the videos
        self.reset_client = self.create_client(ResetScene, graph.RESET_SCENE, callback_group=io)
        self.check_client = self.create_client(CheckTasks, graph.CHECK_TASKS, callback_group=io)
        self.parameter_client = self.create_client(SetParameters, f"{bridge}/set_parameters", callback_group=io)
        self.parameter_reader = self.create_client(GetParameters, f"{bridge}/get_parameters", callback_group=io)
        self._server = ActionServer(
            self, RunEvaluation, graph.RUN_EVALUATION, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"ready: action {self.resolve_topic_name(graph.RUN_EVALUATION)}, bridge "
                               f"{bridge}, results under {self.runs_dir.resolve()}")

    # -- goal handling -------------------------------------------------------------------------
    def config_from_goal(self, goal: RunEvaluation.Goal) -> EvaluationConfig:
        # An empty variant is a client that left the field at its default: CALVIN's standard protocol.
        return EvaluationConfig(num_sequences=int(goal.num_sequences), variant=goal.variant or "standard",
                                episode_length=int(goal.episode_length), seed=int(goal.seed),
                                run_name=goal.run_name, clock_mode=self.params["clock_mode"],
                                stall_timeout=float(self.get_parameter("stall_timeout").value),
                                tasks=tuple(goal.tasks), backend=self.params["backend"],
                                protocol=goal.protocol or "calvin").validate()

    def _on_goal(self, goal: RunEvaluation.Goal) -> GoalResponse:
        try:
            self.config_from_goal(goal)
        except EvaluationError as error:
            self.get_logger().error(f"rejected evaluation goal: {error}")
            return GoalResponse.REJECT
        with self.lock:
            if self._busy or self.stopping.is_set():
                self.get_logger().error("rejected evaluation goal: an evaluation is already running")
                return GoalResponse.REJECT
            self._busy = True
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> RunEvaluation.Result:
        self.health.set_value("evaluation", f"running {goal_handle.request.run_name or 'a goal'}")
        try:
            result = GoalExecution(self).evaluate(goal_handle)
            self.health.set_value("evaluation", f"idle; the last ended: {result.message}",
                                  OK if result.success else WARN)
            return result
        except Exception as error:  # never leave a goal hanging, never take the node down
            self.get_logger().error(f"evaluation failed: {error!r}")
            self.health.set_value("evaluation", f"idle; the last failed: {error!r}", ERROR)
            goal_handle.abort()
            return RunEvaluation.Result(success=False, message=f"evaluation failed: {error!r}",
                                        success_rates=[math.nan] * 5, average_length=math.nan)  # no score
        finally:
            self.timing = None
            with self.lock:
                self._busy = False

    def graph_counts(self) -> GraphCounts:
        # Our own goal_latent subscription (for timing) does not count as a consumer.
        me = (self.get_name(), self.get_namespace())
        latent_subscribers = self.get_subscriptions_info_by_topic(self.resolve_topic_name(graph.GOAL_LATENT))
        return GraphCounts(
            policies=self.count_publishers(graph.EE_TRAJECTORY),
            latent_consumers=sum((info.node_name, info.node_namespace) != me for info in latent_subscribers),
            latent_producers=self.count_publishers(graph.GOAL_LATENT),
            instruction_listeners=self.count_subscribers(graph.INSTRUCTION),
            instruction_matched=self.instruction_pub.get_subscription_count())

    # -- subscriptions (reentrant group; they only record or queue) -------------------------------
    def _on_scene_state(self, message: SceneState) -> None:
        self.health.received(graph.SCENE_STATE)
        if self.timing is not None:
            self.events.put(("scene_state", int(message.step)))

    def _on_goal_latent(self, message: GoalLatent) -> None:
        self.health.received(graph.GOAL_LATENT)
        try:
            goal = goal_latent_from_msg(message).goal  # what System 1 would refuse is no latent to count or film
        except ValueError as error:
            self.health.dropped(graph.GOAL_LATENT, str(error))
            if self.drop_log.should_log(graph.GOAL_LATENT, str(error)):
                self.get_logger().error(f"goal_latent {message.sequence} dropped: {error}")
            return
        timing = self.timing
        with self.lock:
            self.filming.on_latent(stamp_to_ns(message.observation_stamp))
            if timing is not None:
                timing.on_goal_latent(time.monotonic(), int(message.sequence), stamp_to_ns(message.observation_stamp),
                                      float(message.inference_time),
                                      (goal.num_tokens, goal.token_dim, len(goal.coarse) if goal.coarse else 0))
            else:
                self.recent_latents[int(message.sequence)] = stamp_to_ns(message.observation_stamp)
                while len(self.recent_latents) > RECENT_LATENTS:
                    self.recent_latents.popitem(last=False)

    def _on_trajectory(self, message: EETrajectory) -> None:
        self.health.received(graph.EE_TRAJECTORY)
        self.filming.on_trajectory(message)
        timing = self.timing
        if timing is not None:
            with self.lock:
                timing.on_trajectory(time.monotonic(), stamp_to_ns(message.header.stamp),
                                     int(message.latent_sequence), float(message.inference_time))

    # -- shutdown ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy

    def close(self) -> None:
        """Ask a running evaluation to stop; it writes its partial results and ends its goal."""
        self.stopping.set()

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
