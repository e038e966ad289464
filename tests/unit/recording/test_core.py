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


