"""The recorder's ROS-free core (recording/core.py): type hashes as rosidl computes them, bags that
rosbags' Reader and a typestore built here from the .msg files read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.processes import TESTS_DIR

from openhelix_ros.recording.core import (
    UnknownTypeError,
    build_typestore,
    ensure_type,
)

ROOT = TESTS_DIR.parent
MSG_DIR = ROOT / "src" / "openhelix_msgs" / "msg"


def rosidl_hash(type_name: str) -> str:
    package, _, name = type_name.split("/")
    description = json.loads((Path(sys.prefix) / "share" / package / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in description["type_hashes"] if h["type_name"] == type_name)


def test_type_hashes_match_rosidl():
    store = build_typestore()
    for path in MSG_DIR.glob("*.msg"):
        type_name = f"openhelix_msgs/msg/{path.stem}"
        assert store.hash_rihs01(type_name) == rosidl_hash(type_name), type_name
    for type_name in ("sensor_msgs/msg/PointCloud2", "trajectory_msgs/msg/JointTrajectory",
                      "visualization_msgs/msg/MarkerArray", "rosgraph_msgs/msg/Clock"):
        ensure_type(store, type_name)
        assert store.hash_rihs01(type_name) == rosidl_hash(type_name), type_name


def test_unknown_types_are_named():
    store = build_typestore()
    with pytest.raises(UnknownTypeError, match="foo_msgs/msg/Bar is unknown"):
        ensure_type(store, "foo_msgs/msg/Bar")
    with pytest.raises(UnknownTypeError, match="not a message type name"):
        ensure_type(store, "openhelix_msgs/action/RunEvaluation_FeedbackMessage")




def test_recovery_streams_every_complete_chunk_of_a_cut_off_bag_and_skips_the_torn_one(tmp_path):
    """A bag cut off in the middle of a chunk, as a crash or a full disk leaves it: recover_bag reads the
    file mapped, chunk by chunk, and brings back exactly the messages of the complete chunks, in order."""
    from rosbags.rosbag2 import Reader

    from openhelix_ros.recording.core import BagRecorder, recover_bag, scan_mcap

    store = build_typestore()
    String = store.types["std_msgs/msg/String"]
    bag = BagRecorder(tmp_path / "whole", typestore=store)
    bag.open()
    bag.add_topic("/chatter", "std_msgs/msg/String")
    for i in range(1, 4001):  # ~ 1 kB each: four complete 1 MiB chunks and a last one the close writes
        bag.write("/chatter", store.serialize_cdr(String(data=f"{i:06d}" + "x" * 1000), String.__msgtype__),
                  i * 1_000_000)
    bag.close()
    mcap = next((tmp_path / "whole").glob("*.mcap"))
    data = mcap.read_bytes()
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "torn.mcap").write_bytes(data[: int(len(data) * 0.6)])  # 60 %: two chunks and part of the third

    events = list(scan_mcap(torn / "torn.mcap"))
    assert events[0][:3] == ("channel", events[0][1], "/chatter")
    recovered = recover_bag(torn, tmp_path / "recovered")
    with Reader(recovered.output) as reader:
        numbers = [int(store.deserialize_cdr(raw, c.msgtype).data[:6]) for c, _, raw in reader.messages()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == sum(kind == "message" for kind, *_ in events)
    assert 1000 < len(numbers) < 0.6 * 4000  # whole chunks only: none of the torn one
    with pytest.raises(Exception, match="not an MCAP file"):
        list(scan_mcap(tmp_path / "recovered" / "metadata.yaml"))
