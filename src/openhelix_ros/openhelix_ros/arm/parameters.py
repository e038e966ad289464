"""The arm_interface node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and arm/node.py
declares them and hands the values to arm/core.py."""

from __future__ import annotations

from openhelix_ros.arm.estop import ESTOP_WATCH_MODES
from openhelix_ros.arm.kinematics import FRANKA_HAND_TCP_OFFSET
from openhelix_ros.arm.safety import VelocityLimits, WorkspaceBounds
from openhelix_ros.common import graph
from openhelix_ros.common.parameters import ParameterSpec


def safety_parameters(linear_speed_limit: float, angular_speed_limit: float) -> tuple[ParameterSpec, ...]:
    """The safety filter's settings (arm/safety.py), declared alike by every node that applies it
    (arm_interface, system1): the workspace box and the TCP speed limits, at most the given ones."""
    return (
        ParameterSpec("workspace_low", list(WorkspaceBounds().low), "Lower corner of the workspace box (world, m).",
                      read_only=True),
        ParameterSpec("workspace_high", list(WorkspaceBounds().high), "Upper corner of the workspace box (world, m).",
                      read_only=True),
        ParameterSpec("max_linear_speed", VelocityLimits().max_linear_speed, "TCP speed limit (m/s).",
                      read_only=True, value_range=(0.001, linear_speed_limit)),
        ParameterSpec("max_angular_speed", VelocityLimits().max_angular_speed, "TCP angular speed limit (rad/s).",
                      read_only=True, value_range=(0.001, angular_speed_limit)),
    )


PARAMETERS = (
    ParameterSpec("base_position", [0.0, 0.0, 0.0], "Position (m) of panda_link0 in the world frame.",
                  read_only=True),
    ParameterSpec("base_orientation", [0.0, 0.0, 0.0, 1.0],
                  "Orientation of panda_link0 in the world frame, quaternion (x, y, z, w).", read_only=True),
    ParameterSpec("base_frame", "panda_link0", "frame_id of target_pose (poses are expressed in the base).",
                  read_only=True),
    ParameterSpec("world_frame", graph.WORLD_FRAME, "The only frame_id accepted on ee_trajectory.",
                  read_only=True),
    ParameterSpec("tcp_offset", FRANKA_HAND_TCP_OFFSET, "Hand to tool centre point along z (m).",
                  read_only=True, value_range=(0.0, 0.5)),
    # Franka's own Cartesian limits bound what may be asked of the real arm.
    *safety_parameters(linear_speed_limit=1.7, angular_speed_limit=2.5),
    ParameterSpec("max_joint_jump", 0.5, "Largest change of one joint between consecutive IK solutions (rad); "
                  "more means a branch flip and the trajectory is rejected.", read_only=True,
                  value_range=(0.01, 6.3)),
    ParameterSpec("joint_state_timeout", 0.5, "Trajectories are rejected when the newest joint_states is "
                  "older than this (s): IK must start from where the arm is.", read_only=True,
                  value_range=(0.01, 60.0)),
    ParameterSpec("estop_watch", "lost", "When to hold for an estop that can no longer be heard (arm/estop.py): "
                  f"{', '.join(ESTOP_WATCH_MODES)}. lost: once the last estop publisher went away, until one says "
                  "released; required: also before any estop publisher exists; off: only while pressed.",
                  read_only=True),
    ParameterSpec("estop_timeout", 0.0, "Hold when no estop message came for this long (s), for a pendant that "
                  "repeats its state as a heartbeat; 0: the latched state alone counts.", read_only=True,
                  value_range=(0.0, 60.0)),
    ParameterSpec("control_rate", 30.0, "Rate (Hz) of target_pose streaming and of the estop hold.",
                  read_only=True, value_range=(1.0, 1000.0)),
    ParameterSpec("gripper_open_position", 0.04, "Finger joint position (m, each finger) commanded to open "
                  "the gripper (Franka Hand: 0.04).", read_only=True, value_range=(0.0, 0.1)),
    ParameterSpec("gripper_closed_position", 0.0, "Finger joint position (m, each finger) commanded to close "
                  "the gripper; the fingers stop on what they hold.", read_only=True, value_range=(0.0, 0.1)),
)

