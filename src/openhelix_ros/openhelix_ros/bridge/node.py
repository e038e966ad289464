"""calvin_bridge: the simulator (the embedded play table or the real calvin_env) as ROS topics.

Publishes, all stamped with the step's stamp (docs/ros_graph.md): ``camera/{static,gripper}/
{image_raw,depth,camera_info,pose}`` (rgb8, 32FC1 metres, pinhole intrinsics, the optical frame in world),
``points`` (PointCloud2 xyz + rgb, frame ``world``: both depth images fused), ``joint_states``, ``ee_pose``, ``scene_state``
(openhelix_msgs/SceneState, published last: it marks the step's observation complete) and, in lockstep
mode, ``/clock`` (first). Subscribes ``ee_trajectory`` and ``instruction`` (its ``task`` starts the
simulator's subtask: CALVIN-D moves that task's block). Serves ``reset_scene`` and ``check_tasks``.

Clock modes: ``realtime`` steps at ``control_rate`` from a wall timer and executes the waypoint of the
newest trajectory due now (holding when there is none). ``lockstep`` publishes step t, then steps only
once it has the action for t: the next waypoint of the current plan (at most ``waypoints_per_plan`` per
plan), else the first waypoint of a trajectory stamped exactly with step t's stamp. Waiting never blocks
the executor: the state machine is driven by the trajectory callback, a guard condition and a watchdog
timer, so services answer while it waits. With no ``ee_trajectory`` publisher at all the bridge waits
without a timeout; when one appears it re-sends the current observation (the newcomer missed it);
with one, it re-sends the observation every ``resend_after`` seconds until a plan comes (a subscriber
that started after it was published, System 2 still loading its model, say, or one that lost the cloud,
gets it then; the nodes answer a stamp once), and ``step_timeout`` seconds without a plan make it log
what it waits for and hold for one step. That timeout runs only once an instruction has arrived
since the last reset: before one, no policy is due to act (System 2 has nothing to encode, the expert
no task), and holding would only age the episode before it starts.

While an evaluator has set ``protocol`` (calvin or release; lockstep), every state published after an
instruction waits for a ``check_tasks`` call before the world moves on (core.CheckGate), so each env
step is checked, and a completed subtask drops the rest of a plan under way; ``release`` also runs up to
20 waypoints of each plan open-loop and clips positions to ``release_position_low/high``
(docs/ros_graph.md, "Two protocols").

Bad input (NaN or out-of-workspace trajectories, wrong array lengths on reset, unknown tasks) is logged
or answered with ``success: false`` naming the problem; the node keeps running.
"""

from __future__ import annotations

import sys
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from openhelix_msgs.msg import EETrajectory, Instruction
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.bridge.core import (
    BridgeConfig,
    BridgeCore,
    CheckGate,
    HoldStep,
    LockstepWatchdog,
    Notice,
    Republish,
    validate_trajectory,
)
from openhelix_ros.bridge.messages import ObservationPublisher, scene_state_msg
from openhelix_ros.bridge.parameters import PARAMETERS
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    stamp_to_ns,
    trajectory_from_msg,
)
from openhelix_ros.common.health import NodeHealth
from openhelix_ros.common.node_utils import (
    TRAJECTORY_QOS,
    declare_parameters,
    run_node,
    start_diagnostics,
    subscribe_instructions,
)
from openhelix_ros.common.timing import RepeatLimiter
from openhelix_ros.sim.calvin_backend import calvin_available

# After an ee_trajectory publisher appears, wait this long before re-sending the current observation,
# so that discovery has matched our publishers to its subscriptions too.
NEW_POLICY_GRACE = 0.5  # s
WATCHDOG_PERIOD = 0.05  # s


class CalvinBridge(Node):
    def __init__(self) -> None:
        super().__init__("calvin_bridge")
        p = declare_parameters(self, PARAMETERS)
        config = BridgeConfig.from_parameters(p)
        config.validate()  # a ValueError here is a configuration error: run_node says so and exits 2
        if config.backend == "calvin" and not calvin_available():
            raise ValueError("backend 'calvin' needs calvin_env, which is not installed here (no registry carries "
                             "it: clone mees/calvin_env and pip install -e it into this environment); use "
                             "backend 'embedded' for the play table")
        self._lockstep = config.clock_mode == "lockstep"
        self._watchdog = LockstepWatchdog(p["step_timeout"], p["resend_after"], NEW_POLICY_GRACE)
        self._gate = CheckGate(p["step_timeout"])
        self._points_every_step = p["publish_points_every_step"] or not self._lockstep
        self._core = BridgeCore(config, clock=self._now_ns)
        self._set_protocol(p["protocol"])  # a ValueError here is a configuration error too

        self._outputs = ObservationPublisher(self, with_clock=self._lockstep)
        self._health = NodeHealth(self.get_name())
        self._repeats = RepeatLimiter(2.0)  # a flood of one bad trajectory is logged every 2 s, all counted
        start_diagnostics(self, self._health)
        self.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_trajectory, TRAJECTORY_QOS)
        subscribe_instructions(self, self._on_instruction)
        self.create_service(ResetScene, graph.RESET_SCENE, self._on_reset)
        self.create_service(CheckTasks, graph.CHECK_TASKS, self._on_check_tasks)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        if self._lockstep:
            self._advance = self.create_guard_condition(self._step_on_plan)
            self.create_timer(WATCHDOG_PERIOD, self._on_watchdog)
        else:
            self.create_timer(1.0 / config.control_rate, self._realtime_tick)
        self._publish_and_continue()
        self.get_logger().info(
            f"calvin_bridge ready: backend {config.backend}, {config.clock_mode} at {config.control_rate:g} Hz, "
            f"render {config.render}, waypoints_per_plan {config.waypoints_per_plan}, "
            f"dynamic {config.dynamic or 'off'}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_and_continue(self) -> None:
        """Publish the current observation; in lockstep, then either step on (plan left) or wait."""
        observation = self._core.current
        self._health.published(graph.SCENE_STATE)
        self._health.set_value("step", str(observation.step))
        if not self._lockstep:
            self._outputs.publish(observation, with_points=True)
            return
        needs_plan = self._core.follower.needs_plan()
        self._outputs.publish(observation, with_points=needs_plan or self._points_every_step)
        # An evaluator's protocol set (CheckGate): the oracle compares this state before the world moves on.
        held = self._gate.hold(observation.stamp_ns, time.monotonic())
        if needs_plan:
            self._watchdog.wait(time.monotonic())
            return
        self._watchdog.plan_accepted()
        if not held:
            self._advance.trigger()  # step from the executor, so services get a turn in between

    # ------------------------------------------------------------------------------ lockstep
    def _step_on_plan(self) -> None:
        # Triggered after publishing an observation the current plan still covers (or once the
        # evaluator's check of it came). A reset in between has published its own observation and
        # started waiting (or dropped the plan): nothing to do.
        if self._watchdog.waiting or self._gate.holding or self._core.lockstep_step() is None:
            return
        self._publish_and_continue()

    def _on_watchdog(self) -> None:
        current = self._core.current
        if self._gate.expired(time.monotonic()):
            self.get_logger().warning(f"protocol {self._core.protocol}: no check_tasks call for step {current.step} within "
                                      f"{self._gate.timeout:g} s; executing the plan on without the oracle")
            self._advance.trigger()
        for command in self._watchdog.tick(time.monotonic(), self.count_publishers(graph.EE_TRAJECTORY), current.step):
            if isinstance(command, Republish):
                self._outputs.publish(current, with_points=True)
            elif isinstance(command, Notice):
                self.get_logger().info(command.text)
            elif isinstance(command, HoldStep):
                self.get_logger().warning(f"lockstep: {command.reason} (stamp {current.stamp_ns * 1e-9:.4f} s)")
                self._core.step_env(None)
                self._publish_and_continue()

    # ------------------------------------------------------------------------------ realtime
    def _realtime_tick(self) -> None:
        self._core.realtime_step(self._now_ns())
        self._publish_and_continue()

    # ------------------------------------------------------------------------------ inputs
    def _on_trajectory(self, message: EETrajectory) -> None:
        self._health.received(graph.EE_TRAJECTORY)
        try:
            trajectory = trajectory_from_msg(message)
            current = self._core.current
            validate_trajectory(trajectory, self._core.bounds, graph.WORLD_FRAME,
                                current_position=None if current is None else current.tcp_position)
        except ValueError as error:
            self._health.dropped(graph.EE_TRAJECTORY, str(error))
            if self._repeats.should_log(graph.EE_TRAJECTORY, str(error)):
                self.get_logger().error(f"dropped {graph.EE_TRAJECTORY} #{message.sequence} stamped "
                                        f"{stamp_to_ns(message.header.stamp) * 1e-9:.4f} s: {error}")
            return
        follower = self._core.follower
        if not self._lockstep:
            if not follower.offer(trajectory):
                self.get_logger().debug("ignored a trajectory older than the current one")
            return
        current = self._core.current
        if not self._watchdog.waiting or not follower.accept_plan(trajectory, current.stamp_ns):
            notice = self._watchdog.ignored_plan(trajectory.stamp_ns, current.stamp_ns)
            if notice is not None:
                self.get_logger().info(notice.text)
            return
        self._watchdog.plan_accepted()
        if self._gate.holding:
            return  # the plan's first waypoint waits for the check of the state it starts from
        self._core.lockstep_step()
        self._publish_and_continue()

    def _on_instruction(self, message: Instruction) -> None:
        self._health.received(graph.INSTRUCTION)
        self._watchdog.instructed(time.monotonic())
        self._gate.arm()
        task = message.task.strip()
        if not task:
            return  # an instruction without a task id starts no simulator subtask (System 2 still reads it)
        try:
            self._core.begin_subtask(task)
        except ValueError as error:
            self.get_logger().error(f"instruction #{message.sequence} {message.text!r}: {error}")

    def _set_protocol(self, protocol: str) -> None:
        self._core.set_protocol(protocol)
        # Set (calvin or release): an evaluator drives the bridge and checks every state it publishes.
        self._gate.enabled = self._lockstep and bool(protocol)
        if not self._gate.enabled and self._gate.checked():
            self._advance.trigger()  # a step held for the oracle goes on (a no-op while a plan is awaited)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        protocol = [p.value for p in parameters if p.name == "protocol"]
        if protocol:
            if protocol[0] == "release" and not self._lockstep:
                return SetParametersResult(successful=False, reason="the release protocol counts policy calls "
                                           "and checks every step: it needs clock_mode lockstep")
            try:
                self._set_protocol(protocol[0])
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
            clip = self._core.config.release_position_bounds
            self.get_logger().info(
                f"protocol {protocol[0] or 'cleared'}: up to {self._core.follower.waypoints_per_plan} waypoints per plan"
                + (f", positions clipped to {list(clip.low)}..{list(clip.high)}" if self._core.protocol == "release"
                   and clip is not None else ", no position clip")
                + (", every state checked before the next step" if self._gate.enabled else ""))
        changes = {p.name: p.value for p in parameters if p.name in ("dynamic", "dynamic_speed")}
        if not changes:
            return SetParametersResult(successful=True)
        mode = changes.get("dynamic", self._core.config.dynamic or "")
        speed = changes.get("dynamic_speed")
        try:
            self._core.set_dynamic(mode, speed)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.get_logger().info(f"CALVIN-D: dynamic {self._core.config.dynamic or 'off'}, "
                               f"speed {self._core.config.dynamic_speed:g} m/s")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------ services
    def _on_reset(self, request: ResetScene.Request, response: ResetScene.Response) -> ResetScene.Response:
        try:
            self._core.reset(request.robot_obs, request.scene_obs,
                             seed=int(request.seed) if request.use_seed else None)
        except ValueError as error:
            response.success = False
            response.message = f"reset refused, scene unchanged: {error}"
            response.state = scene_state_msg(self._core.current)
            self.get_logger().error(response.message)
            return response
        self._watchdog.reset()
        self._gate.disarm()  # the held step is gone with the plan; the next instruction arms it again
        self._publish_and_continue()
        response.success = True
        response.message = f"reset to step 0 at {self._core.current.stamp_ns * 1e-9:.4f} s"
        response.state = scene_state_msg(self._core.current)
        return response

    def _on_check_tasks(self, request: CheckTasks.Request, response: CheckTasks.Response) -> CheckTasks.Response:
        start = request.start_state
        try:
            response.completed = self._core.check_tasks(list(request.tasks), stamp_to_ns(start.header.stamp),
                                                        start.robot_obs, start.scene_obs)
            response.success = True
            response.message = f"{len(response.completed)} of {len(request.tasks)} completed"
        except ValueError as error:
            response.success = False
            response.completed = []
            response.message = str(error)
            self.get_logger().error(f"check_tasks: {error}")
        response.current_state = scene_state_msg(self._core.current)
        if self._gate.checked():
            done = response.success and request.tasks and len(response.completed) == len(request.tasks)
            if done and self._core.subtask_done():
                # Ask for a plan from here, for the next subtask.
                self._outputs.publish(self._core.current, with_points=True)
                self._watchdog.wait(time.monotonic())
            elif not self._core.follower.needs_plan():
                self._advance.trigger()  # the next waypoint (of the plan or of one that came meanwhile)
        return response

    def close(self) -> None:
        self._core.close()


def main(args: list[str] | None = None) -> int:
    return run_node(CalvinBridge, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
