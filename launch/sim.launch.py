"""The dual-system graph on a simulated arm: calvin_bridge (embedded play table or the real calvin_env),
System 2 and System 1.

    ros2 launch openhelix sim.launch.py
    ros2 launch openhelix sim.launch.py backend:=calvin clock_mode:=realtime checkpoint:=/path/to/ckpt

Parameter files come from share/openhelix/config: graph.yaml (values all nodes share) first, then each
node's own file; launch arguments override both.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("backend", "embedded", "simulator behind the bridge: embedded (PyBullet play table) or calvin"),
    ("clock_mode", "lockstep", "lockstep (sim time; the world waits for the policy) or realtime"),
    ("latent_period_steps", "10", "Asy(N): System 2 encodes every N env steps; 0 = synchronous"),
    ("system2_model", "embedded", "System 2 configuration: tiny, embedded or llava-1.5-7b"),
    ("system1_model", "default", "System 1 configuration: tiny or default"),
    ("checkpoint", "", "checkpoint directory for both systems (overrides the configurations)"),
    ("rviz", "false", "also start rviz2 with rviz/openhelix.rviz"),
]


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare("openhelix"), "config"])
    shared = PathJoinSubstitution([config, "graph.yaml"])
    arg = LaunchConfiguration
    use_sim_time = PythonExpression(["'", arg("clock_mode"), "' == 'lockstep'"])
    common = {"clock_mode": arg("clock_mode"), "latent_period_steps": arg("latent_period_steps")}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        Node(package="openhelix_ros", executable="calvin_bridge", name="calvin_bridge", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "calvin_bridge.yaml"]),
                         {**common, "backend": arg("backend")}]),
        Node(package="openhelix_ros", executable="system2", name="system2", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "system2.yaml"]),
                         {**common, "model": arg("system2_model"), "checkpoint": arg("checkpoint"),
                          "use_sim_time": use_sim_time}]),
        Node(package="openhelix_ros", executable="system1", name="system1", output="screen",
             parameters=[shared, PathJoinSubstitution([config, "system1.yaml"]),
                         {**common, "model": arg("system1_model"), "checkpoint": arg("checkpoint"),
                          "use_sim_time": use_sim_time}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(arg("rviz")),
             arguments=["-d", PathJoinSubstitution([FindPackageShare("openhelix"), "rviz", "openhelix.rviz"])]),
    ])
