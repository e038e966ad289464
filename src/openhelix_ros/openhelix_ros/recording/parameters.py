"""The recorder node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and recording/node.py
declares them and hands the values to recording/core.py."""

from __future__ import annotations

from rcl_interfaces.msg import ParameterType

from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.recording.core import STORAGE_PLUGINS

PARAMETERS = (
    ParameterSpec("topics", [], "Topics to record (relative names resolve in this node's namespace).",
                  type=ParameterType.PARAMETER_STRING_ARRAY, read_only=True),
    ParameterSpec("output", "", "Bag directory to create; its parent must exist. Empty: "
                  "rosbag2_<date>-<time> in the working directory.", read_only=True),
    ParameterSpec("storage", "mcap", f"Storage plugin: {' or '.join(STORAGE_PLUGINS)}.", read_only=True),
    ParameterSpec("discovery_period", 0.2, "Seconds between looks for topics not yet subscribed.",
                  read_only=True, value_range=(0.01, 10.0)),
    ParameterSpec("record_latched", True, "Subscribe transient local to latched publishers, so the message "
                  "they hold from before the recorder started is recorded too (as ros2 bag does); false: "
                  "only what is published after the recorder subscribed (one bag per episode, where the "
                  "previous episode's latched instruction does not belong).", read_only=True),
)

