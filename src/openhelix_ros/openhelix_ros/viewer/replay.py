"""A recorded bag through the viewer: ``openhelix view --bag DIR`` with a time slider.

The bag's messages of the viewed topics are indexed once (rosbags reads the files, MCAP or sqlite3; the
serialized CDR is kept as is), and moving to a time hands the newest message of each topic at or before
it, deserialized by rclpy into the same types the live graph delivers, to the same MessageFeed. Memory is
the viewed topics' share of the bag.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from openhelix_ros.common import graph
from openhelix_ros.common.messages import message_class
from openhelix_ros.viewer.node import VIEWED_TOPICS, MessageFeed

REPLAYED_TOPICS = (*VIEWED_TOPICS, graph.INSTRUCTION)


@dataclass
class _Track:
    type_name: str
    times: list[int] = field(default_factory=list)  # receive time, ns, ascending
    data: list[bytes] = field(default_factory=list)


def _graph_topic(bag_topic: str) -> str | None:
    """The graph topic a recorded name is (a namespace before it allowed), or None."""
    from openhelix_training.data.rosbag import topic_is

    return next((topic for topic in REPLAYED_TOPICS if topic_is(bag_topic, topic)), None)


class BagReplay:
    """The viewed topics of one bag, and the view at any time in it."""

    def __init__(self, path: str | Path, feed: MessageFeed) -> None:
        from rosbags.highlevel import AnyReader

        from openhelix_training.data.rosbag import is_bag, typestore_with_project_types

        self.path = Path(path)
        if not is_bag(self.path):
            raise ValueError(f"{self.path} is not a rosbag2 bag (no metadata.yaml)")
        self.feed = feed
        self.tracks: dict[str, _Track] = {}
        with AnyReader([self.path], default_typestore=typestore_with_project_types()) as reader:
            connections = [c for c in reader.connections if _graph_topic(c.topic)]
            # (rosbags reads every connection when given none)
            for connection, timestamp, raw in (reader.messages(connections=connections) if connections else ()):
                track = self.tracks.setdefault(_graph_topic(connection.topic), _Track(connection.msgtype))
                track.times.append(int(timestamp))
                track.data.append(bytes(raw))
        if not self.tracks:
            raise ValueError(f"bag {self.path} holds none of the viewed topics ({', '.join(REPLAYED_TOPICS)})")
        for track in self.tracks.values():  # the reader yields in time order; keep it so for bisect
            order = sorted(range(len(track.times)), key=track.times.__getitem__)
            track.times = [track.times[i] for i in order]
            track.data = [track.data[i] for i in order]
        self.start_ns = min(t.times[0] for t in self.tracks.values())
        self.end_ns = max(t.times[-1] for t in self.tracks.values())
        self._shown: dict[str, int] = {}

    @property
    def duration(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def messages(self) -> dict[str, int]:
        return {topic: len(track.times) for topic, track in self.tracks.items()}

    def seek(self, seconds: float) -> int:
        """Show the bag ``seconds`` after its first message: the newest message of each topic at or before
        it (each only when it differs from the one shown). Returns how many messages were fed."""
        from rclpy.serialization import deserialize_message

        at = self.start_ns + int(round(float(seconds) * 1e9))
        fed = 0
        for topic, track in self.tracks.items():
            index = bisect.bisect_right(track.times, at) - 1
            if index < 0 or self._shown.get(topic) == index:
                continue
            self._shown[topic] = index
            self.feed.handle(topic, deserialize_message(track.data[index], message_class(track.type_name)))
            fed += 1
        return fed
