"""The dual-system graph on a simulated arm: calvin_bridge (embedded play table or the real calvin_env),
System 2 and System 1 (or, with policy:=expert, the scripted expert).

    ros2 launch openhelix sim.launch.py
    ros2 launch openhelix sim.launch.py backend:=calvin clock_mode:=realtime checkpoint:=/path/to/ckpt
    openhelix say "open the drawer" --task open_drawer      # then instruct it

The graph is declared once, in openhelix_ros/common/graphs.py (``SIM``); ``openhelix up sim`` starts the same
nodes without ros2 launch. Parameter files come from share/openhelix/config: graph.yaml (values all
nodes share) first, then each node's own file; launch arguments override both.
"""

from openhelix_ros.common.launching import generate_launch_description as graph_launch_description


def generate_launch_description():
    return graph_launch_description("sim")
