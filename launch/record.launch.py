"""Record new demonstrations: the bridge, a demonstrator (the scripted expert, from privileged state, or
the teleop node, driven by a person) and the recorder, which writes every topic of config/recorder.yaml
into a rosbag2 bag (MCAP) that openhelix_training reads.

    ros2 launch openhelix record.launch.py output:=runs/demos/episode_0001
    # then publish openhelix_msgs/Instruction messages (openhelix say "..." --task ID) for the expert;
    ros2 launch openhelix record.launch.py policy:=teleop output:=runs/demos/teleop_0001
    # and drive with any Twist source on teleop/twist (teleop_twist_keyboard, a SpaceMouse driver);
    # `openhelix collect [--teleop keyboard|topic]` does all of this for many episodes without ros2 launch.

Declared once in openhelix_ros/common/graphs.py (``RECORD``); ``openhelix up record`` is the same graph.
"""

from openhelix_ros.common.launching import generate_launch_description as graph_launch_description


def generate_launch_description():
    return graph_launch_description("record")
