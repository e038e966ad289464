"""recorder: records a list of topics, as received (serialized CDR), into a rosbag2 bag (MCAP).

Parameters: ``topics`` (names; relative ones resolve in the node's namespace), ``output`` (the bag
directory to create; its parent must exist), ``storage`` (``mcap`` or ``sqlite3``),
``discovery_period`` (s between looks for topics not yet subscribed).

A topic is subscribed once the graph shows its type, so topics may appear in any order and at any
time. The subscription's QoS follows the publishers (reliable / transient local only when every
publisher offers it), as ``ros2 bag record`` does, so the recorder never fails to match. SIGINT and
SIGTERM stop spinning and close the bag, leaving a complete bag with every message received. A recorder
killed outright (SIGKILL, a crash) leaves no metadata.yaml; ``python -m openhelix_ros.recording.core
recover BAG`` then rescues every complete 1 MiB chunk into BAG-recovered.

A write that fails (a full disk, a file-size limit) stops the recording at once: the node logs what
failed and how to rescue the bag, leaves the bag as it is (finishing it would write to the same full
disk) and exits 1, so that whatever started it stops collecting demonstrations nobody records.
``/diagnostics`` reports the bag, the messages and bytes written, and the failure as an ERROR.
"""

from __future__ import annotations

import sys
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openhelix_ros.common.health import ERROR, NodeHealth
from openhelix_ros.common.messages import message_class
from openhelix_ros.common.node_utils import (
    NodeFailed,
    declare_parameters,
    fail_node,
    run_node,
    start_diagnostics,
)
from openhelix_ros.recording.core import (
    BagRecorder,
    RecordingError,
    UnknownTypeError,
    offered_qos,
)
from openhelix_ros.recording.parameters import PARAMETERS

# Keep-last, never keep-all: a keep-all reliable reader back-pressures the publisher (measured: a
# 2000-cloud burst made the publisher's publish() fail), and a recorder must never disturb the graph it
# records. Measured with 320 KB clouds (20k points): 30, 100 and 200 clouds/s are recorded without
# loss (200/s = 64 MB/s); only a burst far beyond any sensor (600 clouds in 0.23 s) overflows the 100
# samples (210 kept), and then DDS drops the excess before the recorder sees it.
RECORD_DEPTH = 100
# Reliable topics are read deeper. A reliable keep-last writer holds up to its depth of samples the
# reader has not taken yet, and a shallower reader drops what the writer counts as delivered: on a busy
# CI machine a 100-deep reader lost 52 of a 300-message burst from a 1000-deep writer. Discovery does not
# carry the writers' depth (rclpy reports history UNKNOWN, depth 0), so it cannot be matched. The bridge
# publishes its sensors reliable too, so this covers images and clouds: memory is only held for samples
# waiting, and a recorder 1000 clouds behind (about 300 MB at 20k points) has fallen behind for 30 s.
RELIABLE_RECORD_DEPTH = 1000


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__("recorder")
        params = declare_parameters(self, PARAMETERS)
        self._record_latched = bool(params["record_latched"])
        self._wanted: dict[str, str] = {}  # resolved name -> name as given
        for name in params["topics"]:
            try:
                self._wanted[self.resolve_topic_name(name)] = name
            except Exception as error:  # rclpy raises its own InvalidTopicNameException
                self.get_logger().error(f"not recording {name!r}: invalid topic name ({error})")
        self._recording = {}
        self._reported: dict[str, str] = {}  # topic -> last problem logged, so each is said once
        self._bag: BagRecorder | None = None
        self._failure: str | None = None  # why writing stopped, once a write failed
        self._health = NodeHealth(self.get_name())
        start_diagnostics(self, self._health)
        if not self._wanted:
            self.get_logger().error("no valid topic in parameter 'topics': nothing to record, no bag written")
            return
        output = params["output"] or time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")
        try:
            self._bag = BagRecorder(output, storage=params["storage"])
            self._bag.open()
        except RecordingError as error:
            self.get_logger().error(f"not recording: {error}")
            self._bag = None
            return
        self.get_logger().info(f"recording {', '.join(sorted(self._wanted))} to {self._bag.output} "
                               f"({params['storage']})")
        self._health.set_value("bag", str(self._bag.output))
        self._discovery = self.create_timer(params["discovery_period"], self._discover)
        self._discover()

    def _report_once(self, topic: str, problem: str) -> None:
        if self._reported.get(topic) != problem:
            self._reported[topic] = problem
            self.get_logger().error(problem)

    def _discover(self) -> None:
        pending = [topic for topic in self._wanted if topic not in self._recording]
        if not pending:
            self._discovery.cancel()  # every topic has its subscription; nothing left to look for
            return
        graph = dict(self.get_topic_names_and_types())
        for topic in pending:
            types = graph.get(topic)
            if not types:
                continue  # not published yet: look again next period
            if len(types) > 1:
                self._report_once(topic, f"cannot record {topic}: it has several types ({', '.join(types)})")
                continue
            self._subscribe(topic, types[0])

    def _subscribe(self, topic: str, type_name: str) -> None:
        publishers = self.get_publishers_info_by_topic(topic)
        reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                            for p in publishers)
        latched = self._record_latched and bool(publishers) and all(
            p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RELIABLE_RECORD_DEPTH if reliable else RECORD_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        offered = [offered_qos(p.qos_profile.reliability.name, p.qos_profile.durability.name,
                               p.qos_profile.history.name, p.qos_profile.depth) for p in publishers]
        try:
            msg_type = message_class(type_name)  # rclpy needs the type support even for raw bytes
            self._bag.add_topic(topic, type_name, offered)
        except (ValueError, UnknownTypeError, RecordingError) as error:
            self._report_once(topic, f"cannot record {topic} ({type_name}): {error}")
            return
        self._recording[topic] = self.create_subscription(
            msg_type, topic, lambda data, name=topic: self._record(name, data), qos, raw=True)
        self.get_logger().info(f"recording {topic} ({type_name}, "
                               f"{'reliable' if reliable else 'best effort'}"
                               f"{', transient local' if latched else ''}) at depth {qos.depth}")

    def _record(self, topic: str, data: bytes) -> None:
        if self._bag is None or not self._bag.is_open or self._failure is not None:
            return
        try:
            self._bag.write(topic, data, self.get_clock().now().nanoseconds)
        except Exception as error:  # a full disk, say (rosbags raises OSError, or its own error around one)
            self._stop_recording(topic, error)
            return
        self._health.received(topic)
        self._health.set_value("messages written", str(self._bag.message_count))
        self._health.set_value("bytes written", str(sum(stats.bytes for stats in self._bag.topics.values())))

    def _stop_recording(self, topic: str, error: Exception) -> None:
        """A write failed: write nothing more (a bag with a hole in it would look complete), say how to
        rescue what is on disk, and stop the node non-zero."""
        output = self._bag.output
        self._failure = (f"cannot write a message of {topic} to bag {output}: {error}. Recording stopped. Of the "
                         f"{self._bag.message_count} messages recorded, those in complete 1 MiB chunks are on "
                         f"disk: `python -m openhelix_ros.recording.core recover {output} OUTPUT` rescues them "
                         "(give an OUTPUT on a disk with room)")
        self.get_logger().error(self._failure)
        self._health.set_value("bag", self._failure, ERROR)
        fail_node(NodeFailed(f"recorder stopped: cannot write to bag {output}: {error}"))

    def close(self) -> None:
        """Called by run_node after spinning stops (SIGINT/SIGTERM, a failed write): finish the bag."""
        if self._bag is None or not self._bag.is_open:
            return
        if self._failure is not None:
            # Finishing the bag would write its last chunk and summary to the disk that refused a chunk
            # already; left as it is, recover reads every complete chunk back.
            self.get_logger().error(f"bag {self._bag.output} left unfinished after a failed write; recover it")
            return
        for subscription in self._recording.values():
            self.destroy_subscription(subscription)  # no callback can write after this point
        self._recording.clear()
        self._bag.close()
        counts = ", ".join(f"{topic}: {stats.messages}" for topic, stats in sorted(self._bag.topics.items()))
        self.get_logger().info(f"closed bag {self._bag.output} with {self._bag.message_count} messages "
                               f"({counts or 'no topics'})")


def main(args: list[str] | None = None) -> int:
    return run_node(Recorder, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
