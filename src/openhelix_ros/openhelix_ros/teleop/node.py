"""teleop: a human drives the arm through the graph, for demonstrations (``openhelix collect --teleop``).

Subscribes ``teleop/twist`` (geometry_msgs/Twist: linear m/s, angular rad/s of the tool centre point,
in the world frame or, with ``twist_frame: tool``, the gripper's), ``teleop/gripper`` (std_msgs/Bool:
true closes) and ``scene_state`` (the measured pose and the step counter, which reveals resets).
Publishes ``ee_trajectory`` like any policy of the graph, so a recorded tele-operated demonstration is
read by training exactly as a scripted one. Any twist source works: the ``openhelix collect --teleop
keyboard`` terminal, ``teleop_twist_keyboard``/``teleop_twist_joy`` remapped to ``teleop/twist``, or a
SpaceMouse driver's twist topic.

Timing (docs/ros_graph.md): a wall-clock timer at ``control_rate`` drives the node. In ``lockstep`` each
tick answers the newest scene state not yet answered, stamped with it, so the world waits for the
operator's node and runs no faster than real time, which is what a person at the keys needs; a
re-sent observation gets the same plan again. In ``realtime`` each tick publishes a plan of
``horizon`` waypoints from the newest observation. The motion rules (speed limits, dead man's timeout,
workspace box, bounded lead over the measured pose) live in teleop/core.py.
"""

from __future__ import annotations

import sys
import time

from geometry_msgs.msg import Twist
from rclpy.node import Node
from std_msgs.msg import Bool

from openhelix_msgs.msg import EETrajectory, SceneState
from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import stamp_to_ns, trajectory_to_msg
from openhelix_ros.common.node_utils import (
    ANY_PUBLISHER_QOS,
    SCENE_STATE_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
    declare_parameters,
    run_node,
)
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.teleop.core import TeleopConfig, TeleopCore, TeleopPlan
from openhelix_ros.teleop.parameters import PARAMETERS


class TeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        p = declare_parameters(self, PARAMETERS)
        if p["clock_mode"] not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {p['clock_mode']!r}")
        self._lockstep = p["clock_mode"] == "lockstep"
        config = TeleopConfig(control_rate=p["control_rate"], max_linear_speed=p["max_linear_speed"],
                              max_angular_speed=p["max_angular_speed"], command_timeout=p["command_timeout"],
                              twist_frame=p["twist_frame"], horizon=p["horizon"], max_lead=p["max_lead"])
        self._core = TeleopCore(config, WorkspaceBounds(tuple(p["workspace_low"]), tuple(p["workspace_high"])))
        self._sequence = 0
        self._observation: tuple[int, int] | None = None  # (step, stamp_ns) of the newest scene state
        self._answered: tuple[int, int] | None = None  # the observation the last plan answered
        self._last_message: EETrajectory | None = None
        self._scaled_said = False

        self._publisher = self.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
        self.create_subscription(SceneState, graph.SCENE_STATE, self._on_scene_state, SCENE_STATE_QOS)
        # Best effort + volatile matches every twist publisher (keyboards, joysticks, SpaceMouse drivers).
        self.create_subscription(Twist, graph.TELEOP_TWIST, self._on_twist, SENSOR_QOS)
        self.create_subscription(Bool, graph.TELEOP_GRIPPER, self._on_gripper, ANY_PUBLISHER_QOS)
        self.create_timer(config.period, self._on_tick)
        self.get_logger().info(
            f"teleop ready ({p['clock_mode']}): twist on {graph.TELEOP_TWIST} ({config.twist_frame} frame, at most "
            f"{config.max_linear_speed:g} m/s, {config.max_angular_speed:g} rad/s, stop after "
            f"{config.command_timeout:g} s without one), gripper on {graph.TELEOP_GRIPPER}")

    # ------------------------------------------------------------------------------ inputs
    def _on_twist(self, message: Twist) -> None:
        linear = (message.linear.x, message.linear.y, message.linear.z)
        angular = (message.angular.x, message.angular.y, message.angular.z)
        try:
            scaled = self._core.command(linear, angular, time.monotonic())
        except ValueError as error:
            self.get_logger().error(f"{graph.TELEOP_TWIST} dropped, arm stopped: {error}", throttle_duration_sec=2.0)
            return
        if scaled and not self._scaled_said:
            self._scaled_said = True
            self.get_logger().warning(f"{graph.TELEOP_TWIST} faster than the limits; scaled down (said once)")

    def _on_gripper(self, message: Bool) -> None:
        self._core.set_gripper(bool(message.data))
        self.get_logger().info(f"gripper {'closing' if message.data else 'opening'}")

    def _on_scene_state(self, message: SceneState) -> None:
        stamp_ns = stamp_to_ns(message.header.stamp)
        try:
            reset = self._core.observe(message.robot_obs, message.step, stamp_ns)
        except ValueError as error:
            self.get_logger().error(f"dropped {graph.SCENE_STATE} at step {message.step}: {error}")
            return
        if reset:
            self._answered = None
            self.get_logger().info(f"new episode at step {message.step}: target anchored at the arm's pose")
        observation = (int(message.step), stamp_ns)
        if self._lockstep and observation == self._answered and self._last_message is not None:
            # The bridge re-sent the observation it waits on: our answer was lost or is late. Same answer.
            self._publisher.publish(self._last_message)
        self._observation = observation

    # ------------------------------------------------------------------------------ output
    def _on_tick(self) -> None:
        if self._observation is None:
            return
        if self._lockstep and self._observation == self._answered:
            return  # the world waits for a plan only once per observation
        plan = self._core.plan(time.monotonic())
        if plan is None:
            return
        self._publish(plan)
        self._answered = self._observation

    def _publish(self, plan: TeleopPlan) -> None:
        self._sequence += 1
        message = trajectory_to_msg(plan.positions, plan.quaternions, plan.gripper, plan.period,
                                    frame_id=graph.WORLD_FRAME, stamp=plan.stamp_ns, sequence=self._sequence,
                                    latent_sequence=0, latent_stamp=0, inference_time=0.0)
        self._publisher.publish(message)
        self._last_message = message


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopNode, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
