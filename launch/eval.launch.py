"""CALVIN evaluation through topics: the simulated graph (sim.launch.py) plus the evaluator, whose
`run_evaluation` action then runs the protocol:

    ros2 launch openhelix eval.launch.py
    openhelix eval --num-sequences 100 --variant enriched      # or any RunEvaluation action client
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

FORWARDED = ("backend", "clock_mode", "latent_period_steps", "system2_model", "system1_model", "checkpoint")
ARGUMENTS = [
    ("backend", "embedded", "simulator behind the bridge: embedded or calvin"),
    ("clock_mode", "lockstep", "lockstep or realtime"),
    ("latent_period_steps", "10", "Asy(N)"),
    ("system2_model", "embedded", "System 2 configuration"),
    ("system1_model", "default", "System 1 configuration"),
    ("checkpoint", "", "checkpoint directory for both systems"),
    ("runs_dir", "runs", "where the evaluator writes runs/<name>/"),
]


def generate_launch_description():
    share = FindPackageShare("openhelix")
    arg = LaunchConfiguration
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "sim.launch.py"])),
            launch_arguments={name: arg(name) for name in FORWARDED}.items()),
        Node(package="openhelix_ros", executable="evaluator", name="evaluator", output="screen",
             parameters=[PathJoinSubstitution([share, "config", "graph.yaml"]),
                         PathJoinSubstitution([share, "config", "evaluator.yaml"]),
                         {"clock_mode": arg("clock_mode"), "runs_dir": arg("runs_dir"),
                          "use_sim_time": PythonExpression(["'", arg("clock_mode"), "' == 'lockstep'"])}]),
    ])
