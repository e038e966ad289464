"""system1: point cloud + robot state + goal latent -> end-effector trajectory.

Subscribes ``points`` (sensor_msgs/PointCloud2, xyz + rgb, world frame) or, for a camera policy (3D
Diffuser Actor: ``model:=3dda`` or an imported release checkpoint), ``camera/static/points`` and
``camera/gripper/points`` (each camera's organised cloud, paired by stamp), ``ee_pose``
(geometry_msgs/PoseStamped, world frame), ``joint_states`` (finger joints -> gripper openness) and
``goal_latent`` (openhelix_msgs/GoalLatent); publishes ``ee_trajectory`` (openhelix_msgs/EETrajectory:
absolute world-frame poses, clipped to the workspace and slowed to the speed limits, stamped with the
points it planned from and naming the latent it used) and ``visualization/trajectory``
(visualization_msgs/MarkerArray: the waypoints as a line strip and spheres, green open / red closed).

Timing (docs/ros_graph.md) is system1/core.py's PlanScheduler: ``realtime`` replans at ``replan_rate``
Hz on the newest cloud and latent; ``lockstep`` plans every cloud with the exact Asy(N) latent, waiting
up to ``latent_wait_timeout`` s for it and then going on with an earlier one (logged as not exact).
When the latent is older than ``max_latent_age`` nothing is published (said once on stopping and once
on resuming). Inference runs in a worker thread (if it dies, the node exits non-zero); bad input is
logged with its reason and dropped, and the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time

import torch
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, PointCloud2
from visualization_msgs.msg import MarkerArray

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    goal_latent_from_msg,
    pointcloud2_to_organized,
    pointcloud2_to_points,
    pose_stamped_from_msg,
    stamp_to_ns,
    trajectory_to_msg,
)
from openhelix_ros.common.health import OK, WARN, NodeHealth
from openhelix_ros.common.node_utils import (
    LATENT_SUBSCRIBER_QOS,
    LOCKSTEP_SENSOR_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    declare_parameters,
    run_node,
    start_diagnostics,
    start_worker,
)
from openhelix_ros.common.supervision import WorkerSupervisor
from openhelix_ros.common.timing import CLOCK_MODES, RepeatLimiter
from openhelix_ros.system1.core import (
    CameraFrameAssembler,
    LatentRecord,
    PlanRequest,
    finger_width,
    gripper_openness_from_width,
    plan_scheduler_from_parameters,
    system1_core_from_parameters,
)
from openhelix_ros.system1.markers import trajectory_markers
from openhelix_ros.system1.parameters import PARAMETERS

CAMERA_POINTS = {"static": graph.STATIC_POINTS, "gripper": graph.GRIPPER_POINTS}


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
        self._control_rate = float(p["control_rate"])
        self._finger_joints = list(p["finger_joints"])
        self._open_width = float(p["gripper_open_width"])
        self._publish_markers = bool(p["publish_markers"])
        if p["torch_threads"] > 0:
            torch.set_num_threads(int(p["torch_threads"]))
        try:
            self._core = system1_core_from_parameters(p)
        except (OSError, RuntimeError, KeyError) as error:
            raise ValueError(f"cannot load System 1: {error}") from error
        self._scheduler = plan_scheduler_from_parameters(p)
        # The subscriptions hand inputs to the scheduler and the worker asks it what to plan; one
        # condition guards it and wakes the worker when an input comes.
        self._lock = threading.Condition()
        self._sequence = 0
        self._stop = False
        self._said: set[str] = set()  # one-off notices already logged
        self._repeats = RepeatLimiter(2.0)
        self._health = NodeHealth(self.get_name())
        self._supervisor = WorkerSupervisor("system1-inference", p["worker_deadline"], log_error=self.get_logger().error)
        self._health.watch(self._supervisor)
        self._gate_shown = None  # the latent gate's decision last shown on /diagnostics

        self._trajectory_pub = self.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, graph.TRAJECTORY_MARKERS, TRAJECTORY_QOS)
        # Lockstep: every cloud is a step the bridge waits on, and its pose must come with it: reliable.
        sensor_qos = LOCKSTEP_SENSOR_QOS if self._lockstep else SENSOR_QOS
        if self._core.reads_cameras:
            # a camera policy (3D Diffuser Actor) plans from each camera's organised cloud
            self._frames = CameraFrameAssembler(self._core.camera_names)
            for name in self._core.camera_names:
                if name not in CAMERA_POINTS:
                    raise ValueError(f"System 1 reads camera {name!r}, which the graph does not have "
                                     f"(cameras: {', '.join(CAMERA_POINTS)})")
                self.create_subscription(PointCloud2, CAMERA_POINTS[name],
                                         lambda message, name=name: self._on_camera_points(name, message), sensor_qos)
        else:
            self.create_subscription(PointCloud2, graph.POINTS, self._on_points, sensor_qos)
        self.create_subscription(PoseStamped, graph.EE_POSE, self._on_pose, sensor_qos)
        self.create_subscription(JointState, graph.JOINT_STATES, self._on_joint_states, sensor_qos)
        self.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_latent, LATENT_SUBSCRIBER_QOS)
        self._worker = start_worker(self, self._work, "system1-inference", self._supervisor)
        start_diagnostics(self, self._health)
        mode = (f"lockstep, Asy({p['latent_period_steps']})" if self._lockstep
                else f"realtime, replanning at {p['replan_rate']:g} Hz" if p["replan_rate"] > 0
                else "realtime, replanning on every new cloud")
        ensemble = (f", temporal ensemble of {p['temporal_ensemble_plans']} plans" if p["temporal_ensemble_plans"]
                    else "")
        self.get_logger().info(
            f"system1 ready: model {self._core.model_id} ({self._core.describe_goal()}, "
            f"{self._core.num_inference_steps} denoising steps), {mode}{ensemble}, max_latent_age "
            f"{p['max_latent_age']:g} s, workspace {p['workspace_low']}..{p['workspace_high']}")

    def _drop(self, topic: str, text: str, label: str = "") -> None:
        """Log why a message was dropped: each new reason at once, a repeated one every 2 s at most
        (``label``, e.g. a sequence number, is shown but does not make a repeat new)."""
        self._health.dropped(topic, text)
        if self._repeats.should_log(topic, text):
            self.get_logger().error(f"{topic}{label} dropped: {text}")

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.get_logger().warning(text)

    # ----- subscriptions: convert and check at the edge, then hand over -------------------------------

    def _on_points(self, message: PointCloud2) -> None:
        arrival = time.monotonic()
        self._health.received(graph.POINTS)
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
            notices = self._scheduler.on_points(cloud.stamp_ns, cloud.xyz, cloud.rgb, arrival)
            self._lock.notify_all()
        self._log(notices)

    def _on_camera_points(self, name: str, message: PointCloud2) -> None:
        arrival = time.monotonic()
        topic = CAMERA_POINTS[name]
        self._health.received(topic)
        try:
            if message.header.frame_id != self._frame:
                raise ValueError(f"cloud is in frame {message.header.frame_id!r}, expected {self._frame!r}")
            xyz, rgb, missing = pointcloud2_to_organized(message)
            if missing == xyz.shape[0] * xyz.shape[1]:
                raise ValueError("organised cloud has no pixel with a finite point")
            stamp = stamp_to_ns(message.header.stamp)
            frame, reset = self._frames.add(name, stamp, xyz, rgb)
        except ValueError as error:
            self._drop(topic, str(error))
            return
        with self._lock:
            if reset:
                self._core.reset_history()
            if frame is not None:
                notices = self._scheduler.on_points(stamp, frame[0], frame[1], arrival)
                self._lock.notify_all()
            else:
                notices = []
        self._log(notices)

    def _on_pose(self, message: PoseStamped) -> None:
        self._health.received(graph.EE_POSE)
        try:
            position, quaternion, frame, stamp = pose_stamped_from_msg(message)
            if frame != self._frame:
                raise ValueError(f"pose is in frame {frame!r}, expected {self._frame!r}")
        except ValueError as error:
            self._drop("ee_pose", str(error))
            return
        with self._lock:
            self._scheduler.on_pose(stamp, position, quaternion)
            self._lock.notify_all()

    def _on_joint_states(self, message: JointState) -> None:
        self._health.received(graph.JOINT_STATES)
        try:
            width = finger_width(list(message.name), list(message.position), self._finger_joints)
        except ValueError as error:
            self._drop("joint_states", str(error))
            return
        if width is None:
            self._say_once("fingers", f"joint_states has none of the finger joints {self._finger_joints}: the "
                                      "gripper counts as open")
            return
        with self._lock:
            self._scheduler.on_gripper(gripper_openness_from_width(width, self._open_width))

    def _on_latent(self, message: GoalLatent) -> None:
        self._health.received(graph.GOAL_LATENT)
        try:
            received = goal_latent_from_msg(message)
            goal = self._core.check_latent(received.goal)
        except ValueError as error:
            self._drop("goal_latent", str(error), f" {message.sequence}")
            return
        record = LatentRecord(latent=goal, sequence=received.sequence, stamp_ns=received.stamp_ns,
                              observation_stamp_ns=received.observation_stamp_ns,
                              instruction=received.instruction, received=time.monotonic())
        with self._lock:
            self._scheduler.on_latent(record)
            self._lock.notify_all()

    # ----- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                decision = self._scheduler.step(time.monotonic(), self.get_clock().now().nanoseconds)
                gate = self._scheduler.selector.gate.last
                if gate is not None and gate is not self._gate_shown:  # only a new decision is news
                    self._gate_shown = gate
                    self._health.set_value("arm", "moving" if gate.allowed else f"stopped: {gate.reason}",
                                           OK if gate.allowed else WARN)
                if decision.plan is None:
                    self._log(decision.notices)
                    self._lock.wait(timeout=min(decision.wait, 0.5))
                    continue
            self._log(decision.notices)
            published = self._plan_and_publish(decision.plan)
            with self._lock:
                self._scheduler.planned(decision.plan.stamp_ns, published)

    def _log(self, notices) -> None:
        # One call per severity: rclpy ties a call site to the severity it first logged at.
        for notice in notices:
            if notice.level == "info":
                self.get_logger().info(notice.text)
            elif notice.level == "warning":
                self.get_logger().warning(notice.text)
            else:
                self.get_logger().error(notice.text)

    def _plan_and_publish(self, request: PlanRequest) -> bool:
        """Plan, then publish the trajectory and its markers; whether a trajectory was published."""
        stamp, record = request.stamp_ns, request.latent
        started = time.perf_counter()
        try:
            # Supervised: a model failure is logged with its traceback and the worker takes the next cloud.
            done, plan = self._supervisor.run(f"plan for the cloud at {stamp * 1e-9:.3f} s", self._core.plan,
                                              request.xyz, request.rgb, request.position, request.quaternion,
                                              request.gripper_open, record.latent, stamp)
        except ValueError as error:
            self.get_logger().error(f"no trajectory for the cloud at {stamp * 1e-9:.3f} s: {error}")
            return False
        if not done:
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
        self._health.published(graph.EE_TRAJECTORY)
        self._health.set_value("latent used", f"sequence {record.sequence}, "
                                              f"{(stamp - record.observation_stamp_ns) * 1e-9:.3f} s older than the cloud")
        if self._publish_markers:
            self._marker_pub.publish(trajectory_markers(plan.positions, plan.gripper, self._frame, stamp))
        if self._sequence == 1 or self._sequence % 100 == 0:
            self.get_logger().info(
                f"trajectory {self._sequence}: model {plan.inference_time * 1e3:.1f} ms, cloud to trajectory "
                f"{(time.monotonic() - request.arrival) * 1e3:.1f} ms, latent {record.sequence} "
                f"({(stamp - record.observation_stamp_ns) * 1e-9:.3f} s older than the cloud)")
        return True

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(System1Node, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
