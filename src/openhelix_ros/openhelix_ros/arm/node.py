"""arm_interface: EETrajectory -> what standard ROS 2 controllers of a Franka Panda take.

Subscribes ``ee_trajectory`` (openhelix_msgs/EETrajectory, world frame), ``joint_states`` and ``estop``
(std_msgs/Bool). For each accepted trajectory it publishes

- ``joint_trajectory`` (trajectory_msgs/JointTrajectory, joints panda_joint1..7) for a joint
  trajectory controller: inverse kinematics warm-started from the current joint state, one point per
  waypoint at ``(i + 1) * waypoint_period``, stretched where a joint would exceed its velocity limit;
- ``target_pose`` (geometry_msgs/PoseStamped, in ``base_frame``) for Cartesian controllers: the
  waypoint due now, streamed at ``control_rate`` and held at the last one when the trajectory ends;
- ``gripper_command`` (std_msgs/Float64MultiArray: both finger joint positions, m) for a ros2_control
  forward command controller of the Panda's fingers, published when the gripper command of the
  waypoint due now changes (open: ``gripper_open_position``, closed: ``gripper_closed_position``).

Before any of that the trajectory is clipped to the workspace box and slowed to the speed limits
(arm/safety.py). ``estop`` is a latched level (reliable, transient local; arm/estop.py): while it is
pressed, or while the stop could not be heard (its publisher gone, its heartbeat late: ``estop_watch``,
``estop_timeout``), the node publishes a hold (the joints at the moment the hold began) on both topics
at ``control_rate`` and ignores trajectories; a release does not resume the old trajectory.
Trajectories with NaN, in another frame, unreachable or needing a joint flip are
rejected with a log line saying why; the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from openhelix_msgs.msg import EETrajectory
from openhelix_ros.arm.core import ArmPlan, ArmPlanner
from openhelix_ros.arm.estop import EstopMonitor
from openhelix_ros.arm.kinematics import JOINT_NAMES, PandaKinematics, pose_matrix
from openhelix_ros.arm.parameters import PARAMETERS
from openhelix_ros.arm.safety import SafetyFilter, VelocityLimits, WorkspaceBounds
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    joint_positions_from_msg,
    pose_stamped_to_msg,
    seconds_to_duration,
    trajectory_from_msg,
)
from openhelix_ros.common.health import OK, WARN, NodeHealth
from openhelix_ros.common.node_utils import (
    ESTOP_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    declare_parameters,
    run_node,
    start_diagnostics,
)


class ArmInterface(Node):
    def __init__(self) -> None:
        super().__init__("arm_interface")
        p = declare_parameters(self, PARAMETERS)
        self._base_frame = p["base_frame"]
        self._joint_state_timeout_ns = int(p["joint_state_timeout"] * 1e9)
        kinematics = PandaKinematics(tcp_offset=p["tcp_offset"],
                                     base=pose_matrix(p["base_position"], p["base_orientation"]))
        safety = SafetyFilter(WorkspaceBounds(tuple(p["workspace_low"]), tuple(p["workspace_high"])),
                              VelocityLimits(p["max_linear_speed"], p["max_angular_speed"]))
        self._planner = ArmPlanner(kinematics, safety, p["world_frame"], p["joint_state_timeout"],
                                   p["max_joint_jump"])

        # Planning (IK) runs in its own callback group on a second executor thread, so joint states,
        # the estop and the control tick are never queued behind it; this lock guards what they share.
        self._lock = threading.Lock()
        # Notified on every joint_states: a plan that finds them stale waits for fresh ones first (below).
        self._joints_arrived = threading.Condition(self._lock)
        self._estop_monitor = EstopMonitor(p["estop_watch"], p["estop_timeout"])
        self._estop_presses = 0  # counts holds begun, so a plan started before one is never published
        self._estop_reason = ""
        self._joints: np.ndarray | None = None  # newest joint positions, panda_joint1..7
        self._joints_stamp_ns = 0  # when they arrived (node clock)
        self._estop = False  # the arm holds (the estop is pressed, or could not be heard)
        self._hold: np.ndarray | None = None  # joints to hold while it does
        self._plan_start_ns = 0
        self._plan: ArmPlan | None = None  # the trajectory being executed
        self._gripper_positions = {1.0: p["gripper_open_position"], -1.0: p["gripper_closed_position"]}
        self._gripper_sent: float | None = None  # the last command published (+1 / -1)

        self._health = NodeHealth(self.get_name())
        self._health.set_value("estop", "released")
        self._joint_trajectory_pub = self.create_publisher(JointTrajectory, graph.JOINT_TRAJECTORY, TRAJECTORY_QOS)
        self._target_pose_pub = self.create_publisher(PoseStamped, graph.TARGET_POSE, TRAJECTORY_QOS)
        self._gripper_pub = self.create_publisher(Float64MultiArray, graph.GRIPPER_COMMAND, TRAJECTORY_QOS)
        planning, realtime = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_trajectory, TRAJECTORY_QOS,
                                 callback_group=planning)
        self.create_subscription(JointState, graph.JOINT_STATES, self._on_joint_state, SENSOR_QOS,
                                 callback_group=realtime)
        # A publisher whose QoS cannot be matched would be a stop no one hears: say so, loudly.
        self._estop_subscription = self.create_subscription(
            Bool, graph.ESTOP, self._on_estop, ESTOP_QOS, callback_group=realtime,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_estop_incompatible))
        self.create_timer(1.0 / p["control_rate"], self._on_control_tick, callback_group=realtime)
        start_diagnostics(self, self._health)
        self.get_logger().info(
            f"arm_interface ready: base at {np.round(p['base_position'], 3).tolist()} in {p['world_frame']}, "
            f"workspace {p['workspace_low']}..{p['workspace_high']}, limits {p['max_linear_speed']} m/s "
            f"{p['max_angular_speed']} rad/s, estop_watch {p['estop_watch']}, estop_timeout {p['estop_timeout']:g} s")

    # ----- inputs -------------------------------------------------------------------------------------

    def _on_joint_state(self, message: JointState) -> None:
        self._health.received(graph.JOINT_STATES)
        try:
            joints = joint_positions_from_msg(message, JOINT_NAMES)
        except ValueError as error:
            self._health.dropped(graph.JOINT_STATES, str(error))
            self.get_logger().error(f"joint_states dropped: {error}", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._joints = joints
            self._joints_stamp_ns = self.get_clock().now().nanoseconds
            self._joints_arrived.notify_all()

    def _on_estop(self, message: Bool) -> None:
        self._health.received(graph.ESTOP)
        with self._lock:
            # Monotonic, not the node clock: a stalled /clock under use_sim_time must not stop the heartbeat check.
            self._estop_monitor.on_message(bool(message.data), time.monotonic())
            self._apply_estop()

    def _on_estop_incompatible(self, event) -> None:
        self.get_logger().error(
            f"an estop publisher's QoS is incompatible (policy {event.last_policy_kind}): it is not heard. "
            "Publish estop reliable and transient local, e.g. ros2 topic pub --qos-reliability reliable "
            "--qos-durability transient_local estop std_msgs/msg/Bool '{data: true}'")

    def _apply_estop(self) -> None:
        """Act on the estop monitor's decision: begin or end a hold. Call with the lock held."""
        decision = self._estop_monitor.decide(time.monotonic(), self._estop_subscription.get_publisher_count())
        if not decision.changed:
            return
        was_holding = self._estop
        self._estop, self._estop_reason = decision.hold, decision.reason
        self._health.set_value("estop", f"holding: {decision.reason}" if decision.hold else "released",
                               WARN if decision.hold else OK)
        if decision.hold and was_holding:
            self.get_logger().warning(f"{decision.reason}: still holding")
            return
        if decision.hold:
            self._plan = None  # a trajectory interrupted by a hold is never resumed
            self._estop_presses += 1
            self._hold = None if self._joints is None else self._joints.copy()
            self._publish_hold()  # at once, not a control period later
            if self._hold is None:
                self.get_logger().error(f"{decision.reason}, but no joint_states received yet: cannot publish a "
                                        "hold; ignoring trajectories")
            else:
                self.get_logger().warning(f"{decision.reason}: holding joints {np.round(self._hold, 3).tolist()}, "
                                          f"ignoring trajectories")
        else:
            self._hold = None
            self.get_logger().warning("ESTOP released: waiting for a new trajectory")

    def _on_trajectory(self, message: EETrajectory) -> None:
        self._health.received(graph.EE_TRAJECTORY)
        label = f"trajectory {message.sequence}"
        with self._lock:
            # Joint states can look stale only because this node was busy: a long IK (an unreachable
            # plan takes seconds) starves the other executor thread of the GIL. Give a fresh one up to
            # joint_state_timeout to arrive before judging the robot's state stale.
            timeout_s = self._joint_state_timeout_ns * 1e-9
            self._joints_arrived.wait_for(
                lambda: self.get_clock().now().nanoseconds - self._joints_stamp_ns <= self._joint_state_timeout_ns,
                timeout=timeout_s)
            estop, reason, presses = self._estop, self._estop_reason, self._estop_presses
            joints, joints_stamp_ns = self._joints, self._joints_stamp_ns
        if estop:
            self.get_logger().warning(f"{label} ignored: the arm holds ({reason})", throttle_duration_sec=1.0)
            return
        try:
            age = (self.get_clock().now().nanoseconds - joints_stamp_ns) * 1e-9
            # trajectory_from_msg: ValueError on NaN, empty, mismatched lengths
            plan = self._planner.plan(trajectory_from_msg(message), joints, age)
        except ValueError as error:  # bad input or unreachable: say why, drop it, keep the last plan
            self._health.dropped(graph.EE_TRAJECTORY, str(error))
            self.get_logger().error(f"{label} rejected: {error}")
            return
        if plan.safety.modified:
            self.get_logger().warning(f"{label} adjusted by the safety filter: {plan.safety.summary()}")
        command = JointTrajectory(joint_names=list(JOINT_NAMES))
        command.points = [JointTrajectoryPoint(positions=q.tolist(), time_from_start=seconds_to_duration(t))
                          for q, t in zip(plan.joints, plan.times, strict=True)]
        with self._lock:
            # Publishing under the lock: an estop arriving now waits until this is out, then holds.
            if self._estop or self._estop_presses != presses:
                self.get_logger().warning(f"{label} dropped: a hold began while it was being planned")
                return
            now = self.get_clock().now()
            command.header.stamp = now.to_msg()
            self._joint_trajectory_pub.publish(command)
            self._health.published(graph.JOINT_TRAJECTORY)
            self._plan_start_ns, self._plan = now.nanoseconds, plan
        self._on_control_tick()  # the first target now, not a control period later

    # ----- outputs ------------------------------------------------------------------------------------

    def _publish_hold(self) -> None:
        """Publish the hold; call with the lock held."""
        if self._hold is None:
            return
        now = self.get_clock().now()
        hold = JointTrajectory(joint_names=list(JOINT_NAMES))
        hold.header.stamp = now.to_msg()
        # A single point reached "immediately" makes a joint trajectory controller stop where it is.
        hold.points = [JointTrajectoryPoint(positions=self._hold.tolist(), velocities=[0.0] * 7,
                                            time_from_start=seconds_to_duration(0.0))]
        self._joint_trajectory_pub.publish(hold)
        position, quaternion = self._planner.base_pose_of(self._hold)
        self._target_pose_pub.publish(pose_stamped_to_msg(position, quaternion, self._base_frame, now.nanoseconds))

    def _on_control_tick(self) -> None:
        with self._lock:
            self._apply_estop()  # a pendant gone or a late heartbeat holds the arm without a message
            if self._estop and self._hold is None and self._joints is not None:
                self._hold = self._joints.copy()  # held before any joint_states: hold where they say it is
                self.get_logger().warning(f"joint_states arrived: holding joints {np.round(self._hold, 3).tolist()}")
            if self._estop:
                self._publish_hold()
                return
            if self._plan is None:
                return
            now = self.get_clock().now()
            index = self._plan.due((now.nanoseconds - self._plan_start_ns) * 1e-9)
            position, quaternion = self._plan.base_poses[index]
            self._target_pose_pub.publish(pose_stamped_to_msg(position, quaternion, self._base_frame,
                                                              now.nanoseconds))
            if self._plan.gripper[index] != self._gripper_sent:
                # Only changes: a forward command controller keeps its last command.
                self._gripper_sent = float(self._plan.gripper[index])
                finger = float(self._gripper_positions[self._gripper_sent])
                self._gripper_pub.publish(Float64MultiArray(data=[finger, finger]))


def main(args: list[str] | None = None) -> int:
    return run_node(ArmInterface, args if args is not None else sys.argv, threads=2)


if __name__ == "__main__":
    sys.exit(main())
