"""The ROS 2 graph of DESIGN.md in one place: default topic names, their types, who publishes them.

Names are relative (no leading slash) so a namespace or a remap applies, except ``/clock`` and
``/diagnostics``, which ROS defines as absolute. Nodes import their default names from here, and the checks on the RViz
configuration and the launch files compare against it, so a renamed topic is renamed once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the graph: its default name, its ``pkg/msg/Type`` and the nodes at each end."""

    name: str
    type: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...] = ()


# Default topic names, used as the nodes' defaults (one constant per topic, so a typo fails at import).
STATIC_IMAGE = "camera/static/image_raw"
STATIC_DEPTH = "camera/static/depth"
STATIC_CAMERA_INFO = "camera/static/camera_info"
GRIPPER_IMAGE = "camera/gripper/image_raw"
GRIPPER_DEPTH = "camera/gripper/depth"
GRIPPER_CAMERA_INFO = "camera/gripper/camera_info"
# Each camera's optical frame (z forward, x right, y down) in world, stamped like its image: where /tf
# would say it, but tf2_msgs is on no registry. The evaluator projects plans into its videos with it.
STATIC_CAMERA_POSE = "camera/static/pose"
GRIPPER_CAMERA_POSE = "camera/gripper/pose"
POINTS = "points"
# Each camera's pixels as an organised cloud (world xyz + rgb), for System 1 models that read cameras.
STATIC_POINTS = "camera/static/points"
GRIPPER_POINTS = "camera/gripper/points"
JOINT_STATES = "joint_states"
EE_POSE = "ee_pose"
SCENE_STATE = "scene_state"
CLOCK = "/clock"
INSTRUCTION = "instruction"
GOAL_LATENT = "goal_latent"
EE_TRAJECTORY = "ee_trajectory"
TRAJECTORY_MARKERS = "visualization/trajectory"
ESTOP = "estop"
JOINT_TRAJECTORY = "joint_trajectory"
TARGET_POSE = "target_pose"
GRIPPER_COMMAND = "gripper_command"
EVALUATION_PROGRESS = "evaluation/progress"
TELEOP_TWIST = "teleop/twist"
TELEOP_GRIPPER = "teleop/gripper"
# Absolute, as ROS drivers publish it: rqt's robot monitor and diagnostic_aggregator read /diagnostics.
DIAGNOSTICS = "/diagnostics"

# Services and the action (name -> type).
RESET_SCENE = "reset_scene"
CHECK_TASKS = "check_tasks"
RUN_EVALUATION = "run_evaluation"
SERVICES = {
    RESET_SCENE: "openhelix_msgs/srv/ResetScene",
    CHECK_TASKS: "openhelix_msgs/srv/CheckTasks",
}
ACTIONS = {RUN_EVALUATION: "openhelix_msgs/action/RunEvaluation"}

# The node executables (setup.py's console scripts) and the module each runs (``python -m <module>``).
NODE_MODULES: dict[str, str] = {
    "calvin_bridge": "openhelix_ros.bridge.node",
    "system2": "openhelix_ros.system2.node",
    "system1": "openhelix_ros.system1.node",
    "evaluator": "openhelix_ros.evaluation.node",
    "scripted_expert": "openhelix_ros.expert.node",
    "teleop": "openhelix_ros.teleop.node",
    "recorder": "openhelix_ros.recording.node",
    "arm_interface": "openhelix_ros.arm.node",
}

# The frame every world-frame message (points, poses, trajectories) is expressed in.
WORLD_FRAME = "world"

_BRIDGE = ("calvin_bridge",)
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(STATIC_IMAGE, "sensor_msgs/msg/Image", _BRIDGE, ("system2",)),
    TopicSpec(STATIC_DEPTH, "sensor_msgs/msg/Image", _BRIDGE),
    TopicSpec(STATIC_CAMERA_INFO, "sensor_msgs/msg/CameraInfo", _BRIDGE),
    TopicSpec(GRIPPER_IMAGE, "sensor_msgs/msg/Image", _BRIDGE),
    TopicSpec(GRIPPER_DEPTH, "sensor_msgs/msg/Image", _BRIDGE),
    TopicSpec(GRIPPER_CAMERA_INFO, "sensor_msgs/msg/CameraInfo", _BRIDGE),
    TopicSpec(STATIC_CAMERA_POSE, "geometry_msgs/msg/PoseStamped", _BRIDGE),
    TopicSpec(GRIPPER_CAMERA_POSE, "geometry_msgs/msg/PoseStamped", _BRIDGE),
    TopicSpec(POINTS, "sensor_msgs/msg/PointCloud2", _BRIDGE, ("system1",)),
    # Published only while someone subscribes (System 1 with a camera model such as 3dda).
    TopicSpec(STATIC_POINTS, "sensor_msgs/msg/PointCloud2", _BRIDGE, ("system1",)),
    TopicSpec(GRIPPER_POINTS, "sensor_msgs/msg/PointCloud2", _BRIDGE, ("system1",)),
    TopicSpec(JOINT_STATES, "sensor_msgs/msg/JointState", _BRIDGE, ("system1", "arm_interface")),
    # The scripted expert reads the TCP pose from scene_state's robot_obs (same step, no pairing wait).
    TopicSpec(EE_POSE, "geometry_msgs/msg/PoseStamped", _BRIDGE, ("system1",)),
    TopicSpec(SCENE_STATE, "openhelix_msgs/msg/SceneState", _BRIDGE, ("evaluator", "scripted_expert", "teleop")),
    TopicSpec(CLOCK, "rosgraph_msgs/msg/Clock", _BRIDGE),
    TopicSpec(INSTRUCTION, "openhelix_msgs/msg/Instruction", ("evaluator",), ("system2", "scripted_expert")),
    TopicSpec(EVALUATION_PROGRESS, "openhelix_msgs/msg/EvaluationProgress", ("evaluator",)),
    TopicSpec(GOAL_LATENT, "openhelix_msgs/msg/GoalLatent", ("system2",), ("system1",)),
    TopicSpec(EE_TRAJECTORY, "openhelix_msgs/msg/EETrajectory", ("system1", "scripted_expert", "teleop"),
              ("calvin_bridge", "arm_interface")),
    TopicSpec(TRAJECTORY_MARKERS, "visualization_msgs/msg/MarkerArray", ("system1",)),
    # estop comes from the user (a button, a teleop pad); no node of the graph publishes it.
    TopicSpec(ESTOP, "std_msgs/msg/Bool", (), ("arm_interface",)),
    # Twist and gripper commands come from a person's device (openhelix collect --teleop keyboard, a
    # joystick or SpaceMouse driver); no node of the graph publishes them either.
    TopicSpec(TELEOP_TWIST, "geometry_msgs/msg/Twist", (), ("teleop",)),
    TopicSpec(TELEOP_GRIPPER, "std_msgs/msg/Bool", (), ("teleop",)),
    TopicSpec(JOINT_TRAJECTORY, "trajectory_msgs/msg/JointTrajectory", ("arm_interface",)),
    TopicSpec(TARGET_POSE, "geometry_msgs/msg/PoseStamped", ("arm_interface",)),
    TopicSpec(GRIPPER_COMMAND, "std_msgs/msg/Float64MultiArray", ("arm_interface",)),
    # Health (rates, drops by reason, workers): common/health.py.
    TopicSpec(DIAGNOSTICS, "diagnostic_msgs/msg/DiagnosticArray", ("calvin_bridge", "system1", "system2", "arm_interface",
                                                                  "recorder", "evaluator")),
)

TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def published_topics() -> dict[str, str]:
    """Every topic some node of the graph publishes, name -> type."""
    return {spec.name: spec.type for spec in TOPICS if spec.publishers}


def topic_type(name: str) -> str:
    """The type of a graph topic; a leading slash is ignored (RViz and users often write one)."""
    key = name if name in TOPICS_BY_NAME else name.lstrip("/")
    try:
        return TOPICS_BY_NAME[key].type
    except KeyError:
        raise KeyError(f"{name!r} is not a topic of the OpenHelix graph "
                       f"(known: {', '.join(sorted(TOPICS_BY_NAME))})") from None
