"""The recorder's core writes CDR that rclpy serialized into bags that rosbags' Reader and a typestore
built here from the .msg files read back; the recorder's topics are the graph's (needs rclpy, no process)."""

from __future__ import annotations

import pytest
from support.bags import read_bag
from support.processes import TESTS_DIR

from openhelix_ros.recording.core import (
    BagRecorder,
    RecordingError,
    UnknownTypeError,
    offered_qos,
)

ROOT = TESTS_DIR.parent


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_core_writes_what_rosbags_reads(tmp_path, storage):
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    bag = BagRecorder(tmp_path / "core", storage=storage)
    with pytest.raises(RecordingError, match="not open"):
        bag.add_topic("/a", "std_msgs/msg/String")
    bag.open()
    bag.add_topic("/a", "std_msgs/msg/String", [offered_qos("RELIABLE", "VOLATILE", "KEEP_LAST", 10)])
    with pytest.raises(UnknownTypeError):
        bag.add_topic("/b", "foo_msgs/msg/Bar")
    for i in range(5):
        bag.write("/a", serialize_message(String(data=f"m{i}")), 1_000 + i)
    with pytest.raises(RecordingError, match="never added"):
        bag.write("/c", b"", 0)
    bag.close()
    bag.close()  # idempotent
    with pytest.raises(RecordingError, match="not open"):
        bag.write("/a", b"", 0)
    assert [m.data for m in read_bag(tmp_path / "core")["/a"]] == [f"m{i}" for i in range(5)]
    assert bag.topics["/a"].messages == 5
    with pytest.raises(RecordingError, match="exists already"):
        BagRecorder(tmp_path / "core").open()
    with pytest.raises(RecordingError, match="storage must be one of"):
        BagRecorder(tmp_path / "x", storage="rosbag1")


def test_recorder_config_names_graph_topics():
    from openhelix_ros.common.graph import TOPICS_BY_NAME
    from openhelix_ros.common.graphs import parameter_file_values
    from openhelix_ros.recording.node import PARAMETERS

    parameters = parameter_file_values(ROOT / "config" / "recorder.yaml")
    assert set(parameters) == {spec.name for spec in PARAMETERS}
    unknown = [topic for topic in parameters["topics"] if topic not in TOPICS_BY_NAME]
    assert not unknown, f"config/recorder.yaml records topics the graph does not have: {unknown}"


