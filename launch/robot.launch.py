"""The dual-system graph on a physical Franka Panda: System 2, System 1 and arm_interface, in realtime.

Your camera driver and robot driver provide the inputs; remap them onto the graph's names:

    ros2 launch openhelix robot.launch.py image:=/static_cam/color/image_raw points:=/fused/points \
        joint_states:=/franka/joint_states ee_pose:=/franka/ee_pose checkpoint:=/path/to/ckpt

arm_interface turns each EETrajectory into a trajectory_msgs/JointTrajectory (`joint_trajectory`, for a
joint trajectory controller) and a geometry_msgs/PoseStamped (`target_pose`, for Cartesian controllers);
remap those to your controllers' topics. Publish std_msgs/Bool true on `estop` to hold the arm.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("image", "camera/static/image_raw", "static RGB camera topic for System 2"),
    ("points", "points", "world-frame PointCloud2 (xyz + rgb) for System 1"),
    ("joint_states", "joint_states", "the arm's sensor_msgs/JointState"),
    ("ee_pose", "ee_pose", "the arm's end-effector geometry_msgs/PoseStamped in the world frame"),
    ("joint_trajectory", "joint_trajectory", "where the joint trajectory controller listens"),
    ("target_pose", "target_pose", "where a Cartesian controller listens"),
    ("system2_model", "embedded", "System 2 configuration: tiny, embedded or llava-1.5-7b"),
    ("system1_model", "default", "System 1 configuration: tiny or default"),
    ("checkpoint", "", "checkpoint directory for both systems"),
]


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare("openhelix"), "config"])
    shared = PathJoinSubstitution([config, "graph.yaml"])
    arg = LaunchConfiguration
    realtime = {"clock_mode": "realtime", "use_sim_time": False}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        Node(package="openhelix_ros", executable="system2", name="system2", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "system2.yaml"]),
                         {**realtime, "model": arg("system2_model"), "checkpoint": arg("checkpoint")}],
             remappings=[("camera/static/image_raw", arg("image"))]),
        Node(package="openhelix_ros", executable="system1", name="system1", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "system1.yaml"]),
                         {**realtime, "model": arg("system1_model"), "checkpoint": arg("checkpoint")}],
             remappings=[("points", arg("points")), ("joint_states", arg("joint_states")),
                         ("ee_pose", arg("ee_pose"))]),
        Node(package="openhelix_ros", executable="arm_interface", name="arm_interface", output="screen",
             parameters=[PathJoinSubstitution([config, "arm_interface.yaml"])],
             remappings=[("joint_states", arg("joint_states")),
                         ("joint_trajectory", arg("joint_trajectory")),
                         ("target_pose", arg("target_pose"))]),
    ])
