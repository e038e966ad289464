"""rviz/openhelix.rviz shows only topics the graph publishes (common/graph.py), with matching display types."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openhelix_ros.common import graph

RVIZ = Path(__file__).resolve().parents[3] / "rviz" / "openhelix.rviz"

# RViz display class -> the message types it can show.
DISPLAY_TYPES = {
    "rviz_default_plugins/PointCloud2": {"sensor_msgs/msg/PointCloud2"},
    "rviz_default_plugins/MarkerArray": {"visualization_msgs/msg/MarkerArray"},
    "rviz_default_plugins/Marker": {"visualization_msgs/msg/Marker"},
    "rviz_default_plugins/Pose": {"geometry_msgs/msg/PoseStamped"},
    "rviz_default_plugins/Image": {"sensor_msgs/msg/Image"},
    "rviz_default_plugins/Camera": {"sensor_msgs/msg/Image"},
}


def displays(config: dict) -> list[dict]:
    """Every display, including those inside display groups."""
    found, stack = [], list(config["Visualization Manager"]["Displays"])
    while stack:
        display = stack.pop()
        found.append(display)
        stack.extend(display.get("Displays", []))
    return found


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(RVIZ.read_text())


def test_fixed_frame_is_world(config):
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == graph.WORLD_FRAME


def test_every_displayed_topic_is_published_by_the_graph_with_a_matching_type(config):
    published = graph.published_topics()
    shown = {}
    for display in displays(config):
        if "Topic" not in display:
            continue
        topic = display["Topic"]["Value"].lstrip("/")
        assert topic in published, f"{display['Name']} shows {topic!r}, which no node of the graph publishes"
        assert published[topic] in DISPLAY_TYPES[display["Class"]], (
            f"{display['Name']}: {display['Class']} cannot show {published[topic]}")
        shown[topic] = display["Class"]
    assert shown == {
        graph.POINTS: "rviz_default_plugins/PointCloud2",
        graph.TRAJECTORY_MARKERS: "rviz_default_plugins/MarkerArray",
        graph.EE_POSE: "rviz_default_plugins/Pose",
        graph.STATIC_IMAGE: "rviz_default_plugins/Image",
        graph.GRIPPER_IMAGE: "rviz_default_plugins/Image",
    }


def test_displays_subscribe_best_effort_so_any_publisher_matches(config):
    for display in displays(config):
        if "Topic" in display:
            assert display["Topic"]["Reliability Policy"] == "Best Effort", display["Name"]
            assert display["Topic"]["Durability Policy"] == "Volatile", display["Name"]


def test_graph_table_is_consistent():
    names = [spec.name for spec in graph.TOPICS]
    assert len(names) == len(set(names))
    # /clock and /diagnostics are absolute by ROS convention; every other name takes a namespace.
    assert all(not name.startswith("/") for name in names if name not in (graph.CLOCK, graph.DIAGNOSTICS))
    assert graph.topic_type("/points") == "sensor_msgs/msg/PointCloud2"
    with pytest.raises(KeyError, match="not a topic of the OpenHelix graph"):
        graph.topic_type("cmd_vel")
    # Every type named in the table exists in this installation.
    from openhelix_ros.common.messages import message_class
    for spec in graph.TOPICS:
        message_class(spec.type)
