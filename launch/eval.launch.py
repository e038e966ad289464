"""CALVIN evaluation through topics: the simulated graph (sim.launch.py) plus the evaluator, whose
`run_evaluation` action then runs the protocol:

    ros2 launch openhelix eval.launch.py checkpoint:=checkpoints/easy6 runs_dir:=/tmp/runs
    openhelix eval --num-sequences 100 --variant enriched      # or any RunEvaluation action client

Declared once in openhelix_ros/common/graphs.py (``EVAL``); ``openhelix up eval`` is the same graph.
"""

from openhelix_ros.common.launching import generate_launch_description as graph_launch_description


def generate_launch_description():
    return graph_launch_description("eval")
