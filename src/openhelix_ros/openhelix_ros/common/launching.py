"""A launch description for a graph of :mod:`openhelix_ros.common.graphs`: what ``launch/<graph>.launch.py``
returns. Needs the ROS 2 launch system (``launch``, ``launch_ros``, ``ament_index_python``), which only
a full ROS 2 install has; nothing else in openhelix_ros imports this module.

The arguments are declared (so ``ros2 launch openhelix sim.launch.py --show-args`` lists them with their
descriptions and choices); the nodes are made by one OpaqueFunction once the arguments have values, from
``Graph.resolve``, the same function that ``openhelix up`` starts its processes from. Each node gets an
explicit empty (relative) namespace, so launch_ros writes its overrides under the node's fully
qualified name rather than ``/**`` (a ``PushRosNamespace`` still applies), after the parameter files.

Checks that must hold before anything starts (``graphs.wanted_rviz``) raise in that function, so a
refused launch leaves no node behind.
"""

from __future__ import annotations

from pathlib import Path

from openhelix_ros.common.graphs import RVIZ_CONFIG, Graph, get_graph, wanted_rviz

SHARE_PACKAGE = "openhelix"


def generate_launch_description(graph_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    graph = get_graph(graph_name)
    declared = [DeclareLaunchArgument(argument.name, default_value=argument.default,
                                      description=argument.description, choices=list(argument.choices) or None)
                for argument in graph.arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes, args=[graph])])


def _nodes(context, graph: Graph):
    from ament_index_python.packages import get_package_share_directory
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    given = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in graph.arguments}
    values = graph.values(given)
    share = Path(get_package_share_directory(SHARE_PACKAGE))
    actions = []
    if wanted_rviz(graph, values) is not None:
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace="",
                            arguments=["-d", str(share / "rviz" / RVIZ_CONFIG)]))
    for node in graph.resolve(given):
        overrides = {name: ParameterValue(value, value_type=str) if isinstance(value, str) else value
                     for name, value in node.overrides.items()}
        actions.append(Node(
            package="openhelix_ros", executable=node.executable, name=node.name, namespace="", output="screen",
            parameters=[*(str(share / "config" / name) for name in node.parameter_files), overrides],
            remappings=list(node.remaps.items())))
    return actions
