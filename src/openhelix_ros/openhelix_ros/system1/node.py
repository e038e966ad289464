"""system1: point cloud + robot state + goal latent -> end-effector trajectory.

Subscribes ``points`` (sensor_msgs/PointCloud2, xyz + rgb, world frame), ``ee_pose``
(geometry_msgs/PoseStamped, world frame), ``joint_states`` (finger joints -> gripper openness) and
``goal_latent`` (openhelix_msgs/GoalLatent); publishes ``ee_trajectory`` (openhelix_msgs/EETrajectory:
absolute world-frame poses, clipped to the workspace and slowed to the speed limits, stamped with the
points it planned from and naming the latent it used) and ``visualization/trajectory``
(visualization_msgs/MarkerArray: the waypoints as a line strip and spheres, green open / red closed).

Timing (docs/ros_graph.md):
- ``realtime``: replans at ``replan_rate`` Hz (0: whenever new points came and the last plan is done)
  on the newest points, with the newest latent.
- ``lockstep``: sim time; plans on every ``points`` message (the newest, if several queued) with the
  exact Asy(N) latent: the one of step ``max(0, (floor(t / N) - 1) * N)``, waiting for it up to
  ``latent_wait_timeout`` s (logged; after that the latest earlier latent is used, and the log says
  Asy(N) was not exact there), and with the ``ee_pose`` of the same stamp.

Safety: when the latent is older than ``max_latent_age`` (seconds of the active clock: the points'
stamp in lockstep, the node's clock in realtime) nothing is published; the node says once why it
stopped and once when it resumes. Inference runs in a worker thread, so the executor keeps receiving
while a plan is computed. Bad input (a cloud without xyz or rgb, NaN everywhere, a wrong-size latent,
a pose in another frame) is logged with its reason and dropped; the node keeps running.
"""

from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
import torch
from geometry_msgs.msg import Point, PoseStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, PointCloud2
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_ros.arm.safety import SafetyFilter, VelocityLimits, WorkspaceBounds
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    make_header,
    pointcloud2_to_points,
    pose_stamped_from_msg,
    seconds_to_duration,
    stamp_to_ns,
    trajectory_to_msg,
)
from openhelix_ros.common.node_utils import (
    LATENT_QOS,
    LOCKSTEP_SENSOR_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    ParameterSpec,
    declare_parameters,
    run_node,
)
from openhelix_ros.common.timing import CLOCK_MODES, RepeatLimiter, stamp_to_step
from openhelix_ros.system1.core import (
    SYSTEM1_CONFIGS,
    LatentRecord,
    LatentSelector,
    System1Core,
    gripper_openness_from_width,
)

PARAMETERS = (
    ParameterSpec("model", "tiny", f"System 1 configuration: {' | '.join(SYSTEM1_CONFIGS)} (point-cloud scene "
                  "encoder; ignored when 'checkpoint' is set).", read_only=True),
    ParameterSpec("checkpoint", "", "Checkpoint directory (model, training checkpoint or run directory); "
                  "overrides 'model'. Must be a scene_encoder 'points' policy.", read_only=True),
    ParameterSpec("device", "cpu", "Torch device for inference.", read_only=True),
    ParameterSpec("num_inference_steps", 0, "DDIM denoising steps; 0 = the model's default.", read_only=True,
                  value_range=(0, 1000)),
    ParameterSpec("replan_rate", 10.0, "realtime: plans per second at most; 0 = as fast as new points come.",
                  read_only=True, value_range=(0.0, 1000.0)),
    ParameterSpec("clock_mode", "realtime", f"{' | '.join(CLOCK_MODES)} (lockstep uses sim time from /clock).",
                  read_only=True),
    ParameterSpec("latent_period_steps", 0, "lockstep Asy(N): plan step t with the latent of step "
                  "max(0, (floor(t/N) - 1) * N); 0 = the latent of the same step.", read_only=True,
                  value_range=(0, 100000)),
    ParameterSpec("control_rate", 30.0, "Env steps per second of sim time (step = round(stamp * rate)).",
                  read_only=True, value_range=(1.0, 10000.0)),
    ParameterSpec("max_latent_age", 2.0, "No trajectory is published when the latent's image is older than "
                  "this (s of the active clock). Lockstep Asy(N) latents are up to (2N - 1) / control_rate old.",
                  read_only=True, value_range=(0.001, 1e6)),
    ParameterSpec("latent_wait_timeout", 3.0, "lockstep: wall-clock seconds to wait for the latent Asy(N) "
                  "requires (and for the ee_pose of the same step) before going on with an earlier one (logged "
                  "as not exact). Keep it below the bridge's step_timeout, or the bridge holds the pose first.",
                  read_only=True, value_range=(0.0, 600.0)),
    ParameterSpec("waypoint_period", 1.0 / 30.0, "Seconds between published waypoints.", read_only=True,
                  value_range=(0.001, 10.0)),
    ParameterSpec("drop_first_waypoint", True, "Drop the model's waypoint 0 (the current pose).", read_only=True),
    ParameterSpec("workspace_low", list(WorkspaceBounds().low), "Lower corner of the workspace box (world, m).",
                  read_only=True),
    ParameterSpec("workspace_high", list(WorkspaceBounds().high), "Upper corner of the workspace box (world, m).",
                  read_only=True),
    ParameterSpec("max_linear_speed", VelocityLimits().max_linear_speed, "TCP speed limit (m/s).",
                  read_only=True, value_range=(0.001, 10.0)),
    ParameterSpec("max_angular_speed", VelocityLimits().max_angular_speed, "TCP angular speed limit (rad/s).",
                  read_only=True, value_range=(0.001, 20.0)),
    ParameterSpec("finger_joints", ["panda_finger_joint1", "panda_finger_joint2"], "joint_states entries whose "
                  "positions add up to the gripper opening width (m).", read_only=True),
    ParameterSpec("gripper_open_width", 0.07, "Opening width (m) at and above which the gripper counts as "
                  "open in the proprioception (CALVIN's Panda opens to 0.08 m).", read_only=True,
                  value_range=(0.0, 1.0)),
    ParameterSpec("world_frame", graph.WORLD_FRAME, "frame_id of clouds, poses and trajectories.", read_only=True),
    ParameterSpec("publish_markers", True, "Publish the visualization/trajectory MarkerArray.", read_only=True),
    ParameterSpec("seed", 0, "Seed of the diffusion noise: the same inputs give the same trajectory.",
                  read_only=True),
    ParameterSpec("torch_threads", 0, "Intra-op threads for torch; 0 = torch's default.", read_only=True,
                  value_range=(0, 256)),
)

# Colours of the waypoint spheres: open gripper green, closed red (RViz shows the grasp moments).
_OPEN = ColorRGBA(r=0.1, g=0.8, b=0.2, a=1.0)
_CLOSED = ColorRGBA(r=0.9, g=0.1, b=0.1, a=1.0)
_LINE = ColorRGBA(r=0.2, g=0.5, b=1.0, a=1.0)


class System1Node(Node):
    def __init__(self) -> None:
        super().__init__("system1")
        p = declare_parameters(self, PARAMETERS)
        if p["clock_mode"] not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {p['clock_mode']!r}")
        self._lockstep = p["clock_mode"] == "lockstep"
        if self._lockstep:
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._frame = p["world_frame"]
        self._replan_period = 1.0 / p["replan_rate"] if p["replan_rate"] > 0 else 0.0
        self._wait_timeout = float(p["latent_wait_timeout"])
        self._control_rate = float(p["control_rate"])
        self._finger_joints = list(p["finger_joints"])
        self._open_width = float(p["gripper_open_width"])
        self._publish_markers = bool(p["publish_markers"])
        if p["torch_threads"] > 0:
            torch.set_num_threads(int(p["torch_threads"]))
        safety = SafetyFilter(WorkspaceBounds(tuple(p["workspace_low"]), tuple(p["workspace_high"])),
                              VelocityLimits(p["max_linear_speed"], p["max_angular_speed"]))
        try:
            self._core = System1Core.load(p["model"], p["checkpoint"], safety=safety,
                                          num_inference_steps=p["num_inference_steps"],
                                          waypoint_period=p["waypoint_period"],
                                          drop_first_waypoint=p["drop_first_waypoint"], seed=p["seed"])
        except (OSError, RuntimeError, KeyError) as error:
            raise ValueError(f"cannot load System 1: {error}") from error
        if p["device"] != "cpu":
            self._core.model.to(p["device"])
        self._selector = LatentSelector(p["clock_mode"], p["latent_period_steps"], self._control_rate,
                                        p["max_latent_age"])

        self._lock = threading.Condition()
        self._points: collections.deque = collections.deque(maxlen=8)  # (stamp ns, xyz, rgb, arrival)
        self._last_points_stamp: int | None = None
        self._last_points_arrival = 0.0
        self._poses: collections.OrderedDict = collections.OrderedDict()  # stamp ns -> (position, quaternion)
        self._gripper_open: float | None = None
        self._sequence = 0
        self._stop = False
        self._said: set[str] = set()  # one-off notices already logged
        self._repeats = RepeatLimiter(2.0)
        self._idle_repeats = RepeatLimiter(30.0)

        self._trajectory_pub = self.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, graph.TRAJECTORY_MARKERS, TRAJECTORY_QOS)
        # Lockstep: every cloud is a step the bridge waits on, and its pose must come with it: reliable.
        sensor_qos = LOCKSTEP_SENSOR_QOS if self._lockstep else SENSOR_QOS
        self.create_subscription(PointCloud2, graph.POINTS, self._on_points, sensor_qos)
        self.create_subscription(PoseStamped, graph.EE_POSE, self._on_pose, sensor_qos)
        self.create_subscription(JointState, graph.JOINT_STATES, self._on_joint_states, sensor_qos)
        self.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_latent, LATENT_QOS)
        self._worker = threading.Thread(target=self._work, name="system1-inference", daemon=True)
        self._worker.start()
        mode = (f"lockstep, Asy({p['latent_period_steps']})" if self._lockstep
                else f"realtime, replanning at {p['replan_rate']:g} Hz" if p["replan_rate"] > 0
                else "realtime, replanning on every new cloud")
        self.get_logger().info(
            f"system1 ready: model {self._core.model_id} ({self._core.latent_dim}-D latents, "
            f"{self._core.num_inference_steps} denoising steps), {mode}, max_latent_age {p['max_latent_age']:g} s, "
            f"workspace {p['workspace_low']}..{p['workspace_high']}")

    def _drop(self, topic: str, text: str, label: str = "") -> None:
        """Log why a message was dropped: each new reason at once, a repeated one every 2 s at most
        (``label``, e.g. a sequence number, is shown but does not make a repeat new)."""
        if self._repeats.should_log(topic, text):
            self.get_logger().error(f"{topic}{label} dropped: {text}")

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.get_logger().warning(text)

    # ----- subscriptions: convert and check at the edge, then hand over -------------------------------

    def _on_points(self, message: PointCloud2) -> None:
        arrival = time.monotonic()
        try:
            if message.header.frame_id != self._frame:
                raise ValueError(f"cloud is in frame {message.header.frame_id!r}, expected {self._frame!r}")
            cloud = pointcloud2_to_points(message)
            if cloud.rgb is None:
                raise ValueError("PointCloud2 has no rgb field: System 1 embeds every point's colour")
            if len(cloud.xyz) == 0:
                raise ValueError(f"PointCloud2 has no finite point ({cloud.dropped} NaN or infinite dropped)")
        except ValueError as error:
            self._drop("points", str(error))
            return
        if cloud.dropped:
            self.get_logger().warning(f"points: {cloud.dropped} NaN or infinite points dropped, "
                                      f"{len(cloud.xyz)} kept", throttle_duration_sec=5.0)
        with self._lock:
            if (self._lockstep and self._last_points_stamp is not None
                    and cloud.stamp_ns < self._last_points_stamp):
                # Sim time went back: the world was reset. Latents of the old episode share step numbers
                # with the new one, so forget them (new ones arrive only after this cloud's predecessor).
                forgotten = self._selector.history.forget_received_before(self._last_points_arrival)
                self._poses.clear()
                self.get_logger().info(f"sim time went back to {cloud.stamp_ns * 1e-9:.3f} s (a reset): "
                                       f"forgot {forgotten} latent(s) of the previous episode")
            self._last_points_stamp, self._last_points_arrival = cloud.stamp_ns, arrival
            self._points.append((cloud.stamp_ns, cloud.xyz, cloud.rgb, arrival))
            self._lock.notify_all()

    def _on_pose(self, message: PoseStamped) -> None:
        try:
            position, quaternion, frame, stamp = pose_stamped_from_msg(message)
            if frame != self._frame:
                raise ValueError(f"pose is in frame {frame!r}, expected {self._frame!r}")
        except ValueError as error:
            self._drop("ee_pose", str(error))
            return
        with self._lock:
            self._poses[stamp] = (position, quaternion)
            while len(self._poses) > 64:
                self._poses.popitem(last=False)
            self._lock.notify_all()

    def _on_joint_states(self, message: JointState) -> None:
        index = {name: i for i, name in enumerate(message.name)}
        present = [name for name in self._finger_joints if name in index]
        if not present:
            self._say_once("fingers", f"joint_states has none of the finger joints {self._finger_joints}: the "
                                      "gripper counts as open")
            return
        if len(message.position) != len(message.name):
            self._drop("joint_states", f"{len(message.name)} names but {len(message.position)} positions")
            return
        width = float(sum(message.position[index[name]] for name in present))
        if not np.isfinite(width):
            self._drop("joint_states", "finger joint position is NaN or infinite")
            return
        with self._lock:
            self._gripper_open = gripper_openness_from_width(width, self._open_width)

    def _on_latent(self, message: GoalLatent) -> None:
        try:
            latent = self._core.check_latent(np.asarray(message.latent, dtype=np.float32))
        except ValueError as error:
            self._drop("goal_latent", str(error), f" {message.sequence}")
            return
        record = LatentRecord(latent=latent, sequence=int(message.sequence), stamp_ns=stamp_to_ns(message.header.stamp),
                              observation_stamp_ns=stamp_to_ns(message.observation_stamp),
                              instruction=message.instruction, received=time.monotonic())
        with self._lock:
            self._selector.add(record)
            self._lock.notify_all()

    # ----- the worker ---------------------------------------------------------------------------------

    def _wait(self, predicate, timeout: float) -> bool:
        """Wait (lock held) until predicate() or timeout/shutdown; returns predicate()."""
        end = time.monotonic() + timeout
        while not self._stop and not predicate():
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            self._lock.wait(timeout=min(remaining, 0.5))
        return predicate()

    def _work(self) -> None:
        # The stamp of the last cloud a trajectory was published for. A cloud with that stamp again (the
        # lockstep bridge re-sends an observation it got no plan for) is not planned twice; one whose
        # earlier attempt published nothing (the gate was closed, say) is planned again.
        last_planned: int | None = None
        next_slot = time.monotonic()
        while True:
            if not self._lockstep and self._replan_period > 0:
                delay = next_slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            with self._lock:
                while not self._stop:
                    if self._points and self._points[-1][0] == last_planned:
                        self._points.clear()  # a re-sent observation that was already answered
                    if self._points:
                        break
                    self._lock.wait(timeout=0.5)
                if self._stop:
                    return
                skipped = len(self._points) - 1
                stamp, xyz, rgb, arrival = self._points[-1]
                self._points.clear()
                inputs = self._gather(stamp, skipped)
            next_slot = max(next_slot + self._replan_period, time.monotonic())
            if inputs is not None and self._plan_and_publish(stamp, xyz, rgb, arrival, *inputs):
                last_planned = stamp

    def _newer_points(self, stamp: int) -> bool:
        return bool(self._points) and self._points[-1][0] != stamp

    def _gather(self, stamp: int, skipped: int):
        """With the lock held: the pose, openness and latent for a plan at ``stamp``, or None (logged)."""
        if self._lockstep:
            if skipped:
                self.get_logger().warning(f"{skipped} cloud(s) arrived while planning; planning the newest "
                                          f"(step {stamp_to_step(stamp, self._control_rate)})")
            choice = self._selector.choose(stamp)
            waited = 0.0
            if choice.wait:
                started = time.monotonic()
                self._wait(lambda: not self._selector.choose(stamp).wait or self._newer_points(stamp),
                           self._wait_timeout)
                waited = time.monotonic() - started
                reason = choice.reason
                if self._newer_points(stamp) and self._selector.choose(stamp).wait:
                    # The bridge gave up on this step (its step_timeout) and went on: plan the new one.
                    self.get_logger().warning(f"{reason}: a newer cloud came after {waited:.2f} s, planning that one")
                    return None
                choice = self._selector.choose(stamp, fallback=True)
                if choice.exact and waited > 0.5:
                    # Short waits are the normal lockstep rhythm (System 2 still encoding); long ones are
                    # worth a line, since the whole simulation waits with System 1.
                    self.get_logger().info(f"{reason}: waited {waited:.2f} s")
            if not choice.exact and (choice.record is not None or self._idle_repeats.should_log("none", choice.reason)):
                # With no latent at all (no instruction yet), the bridge re-sends its observation every
                # resend_after s: say so every 30 s, not at every re-send.
                self.get_logger().warning(choice.reason + (f" (after waiting {waited:.2f} s)" if waited else ""))
            if not self._wait(lambda: stamp in self._poses, self._wait_timeout if not self._poses else 0.2):
                if not self._poses:
                    self._say_once("no_pose", "no ee_pose received yet: cannot plan (need the current pose)")
                    return None
                self.get_logger().warning(f"no ee_pose stamped {stamp * 1e-9:.3f} s: using the newest one",
                                          throttle_duration_sec=5.0)
            pose = self._poses.get(stamp) or next(reversed(self._poses.values()))
            now_ns = stamp  # sim time of this observation: the active clock
        else:
            choice = self._selector.choose(stamp)
            if not self._poses:
                self._say_once("no_pose", "no ee_pose received yet: cannot plan (need the current pose)")
                return None
            pose = next(reversed(self._poses.values()))
            now_ns = self.get_clock().now().nanoseconds
        decision = self._selector.check_age(choice.record, now_ns)
        if self._selector.gate.changed:
            if decision.allowed:
                self.get_logger().info(f"moving the arm again: {decision.reason}")
            else:
                self.get_logger().warning(f"stopped moving the arm (no trajectory published): {decision.reason}")
        if not decision.allowed:
            return None
        if self._gripper_open is None:
            self._say_once("no_gripper", "no finger joint states yet: the gripper counts as open")
        gripper_open = 1.0 if self._gripper_open is None else self._gripper_open
        return pose[0], pose[1], gripper_open, choice.record

    def _plan_and_publish(self, stamp: int, xyz, rgb, arrival: float, position, quaternion, gripper_open: float,
                          record: LatentRecord) -> bool:
        """Plan, then publish the trajectory and its markers; whether a trajectory was published."""
        started = time.perf_counter()
        try:
            plan = self._core.plan(xyz, rgb, position, quaternion, gripper_open, record.latent)
        except ValueError as error:
            self.get_logger().error(f"no trajectory for the cloud at {stamp * 1e-9:.3f} s: {error}")
            return False
        if plan.safety.modified:
            self.get_logger().warning(f"trajectory adjusted by the safety filter: {plan.safety.summary()}",
                                      throttle_duration_sec=5.0)
        sequence = self._sequence + 1  # taken only once published: sequences have no gaps
        compute = time.perf_counter() - started
        try:
            message = trajectory_to_msg(plan.positions, plan.quaternions, plan.gripper, plan.period,
                                        frame_id=self._frame, stamp=stamp, sequence=sequence,
                                        latent_sequence=record.sequence, latent_stamp=record.stamp_ns,
                                        inference_time=compute)
        except ValueError as error:  # the last line of defence: never publish NaN
            self.get_logger().error(f"trajectory {sequence} not published: {error}")
            return False
        self._trajectory_pub.publish(message)
        self._sequence = sequence
        if self._publish_markers:
            self._marker_pub.publish(self._markers(plan, stamp))
        if self._sequence == 1 or self._sequence % 100 == 0:
            self.get_logger().info(
                f"trajectory {self._sequence}: model {plan.inference_time * 1e3:.1f} ms, cloud to trajectory "
                f"{(time.monotonic() - arrival) * 1e3:.1f} ms, latent {record.sequence} "
                f"({(stamp - record.observation_stamp_ns) * 1e-9:.3f} s older than the cloud)")
        return True

    def _markers(self, plan, stamp: int) -> MarkerArray:
        header = make_header(self._frame, stamp)
        points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in plan.positions]
        line = Marker(header=header, ns="system1_trajectory", id=0, type=Marker.LINE_STRIP, action=Marker.ADD,
                      points=points, color=_LINE)
        line.scale.x = 0.004
        line.pose.orientation.w = 1.0
        spheres = Marker(header=header, ns="system1_trajectory", id=1, type=Marker.SPHERE_LIST, action=Marker.ADD,
                         points=points, colors=[_OPEN if g > 0 else _CLOSED for g in plan.gripper])
        spheres.scale.x = spheres.scale.y = spheres.scale.z = 0.012
        spheres.pose.orientation.w = 1.0
        # Markers outlive their trajectory by a second at most, so a stopped System 1 shows nothing stale.
        line.lifetime = spheres.lifetime = seconds_to_duration(1.0)
        return MarkerArray(markers=[line, spheres])

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(System1Node, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
