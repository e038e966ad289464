"""Record new demonstrations: the bridge, a demonstrator (the scripted expert, from privileged state, or
the teleop node, driven by a person) and the recorder, which writes every topic of config/recorder.yaml
into a rosbag2 bag (MCAP) that openhelix_training reads.

    ros2 launch openhelix record.launch.py output:=runs/demos/episode_0001
    # then publish openhelix_msgs/Instruction messages (text + CALVIN task id) for the expert to carry out;
    ros2 launch openhelix record.launch.py policy:=teleop output:=runs/demos/teleop_0001
    # and drive with any Twist source on teleop/twist (teleop_twist_keyboard, a SpaceMouse driver);
    # `openhelix collect [--teleop keyboard|topic]` does all of this for many episodes without ros2 launch.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("backend", "embedded", "simulator behind the bridge: embedded or calvin"),
    ("output", "", "bag directory to create (empty: rosbag2_<date>-<time> in the working directory)"),
    ("policy", "expert", "who demonstrates: expert (scripted, privileged state) or teleop (a person)"),
]


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare("openhelix"), "config"])
    shared = PathJoinSubstitution([config, "graph.yaml"])
    arg = LaunchConfiguration
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        Node(package="openhelix_ros", executable="calvin_bridge", name="calvin_bridge", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "calvin_bridge.yaml"]),
                         {"backend": arg("backend")}]),
        Node(package="openhelix_ros", executable="scripted_expert", name="scripted_expert", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "scripted_expert.yaml"])],
             condition=LaunchConfigurationEquals("policy", "expert")),
        Node(package="openhelix_ros", executable="teleop", name="teleop", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "teleop.yaml"])],
             condition=LaunchConfigurationEquals("policy", "teleop")),
        Node(package="openhelix_ros", executable="recorder", name="recorder", output="screen",
             parameters=[PathJoinSubstitution([config, "recorder.yaml"]), {"output": arg("output")}]),
    ])
