"""Reading bags back in tests independently of the recorder's code path: rosbags' Reader with a
typestore built here from the project's .msg files."""

from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MSG_DIR = Path(__file__).resolve().parents[2] / "src" / "openhelix_msgs" / "msg"


def independent_typestore():
    store = get_typestore(Stores.ROS2_KILTED)
    for path in MSG_DIR.glob("*.msg"):
        store.register(get_types_from_msg(path.read_text(), f"openhelix_msgs/msg/{path.stem}"))
    return store


def read_bag(path: Path) -> dict[str, list]:
    """topic -> decoded messages, in bag order."""
    store = independent_typestore()
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(store.deserialize_cdr(raw, connection.msgtype))
    return messages
