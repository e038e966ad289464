"""Recording serialized ROS 2 messages into rosbag2 bags, with ``rosbags``. ROS-free.

The recorder node hands over the CDR bytes rclpy gives a ``raw=True`` subscription; this module keeps
them as they are (no deserialization, so any type records at transport speed) in a rosbag2 bag of
version 9 with MCAP (default) or sqlite3 storage and a ``metadata.yaml`` that ``ros2 bag info`` reads.

Each connection in a bag carries its type's full message definition and RIHS01 hash, so readers that
have never seen the type (rosbags, Foxglove, rosbag2 itself) can decode it. Definitions come from a
typestore: ROS 2 kilted's standard interfaces, this project's ``openhelix_msgs`` (from its ``.msg``
files), and any other ``pkg/msg/Type`` whose ``.msg`` file is installed under an ament prefix
(``share/<pkg>/msg/<Type>.msg``).

A bag whose recorder was killed before closing it is rescued by :func:`recover_bag`
(``python -m openhelix_ros.recording.core recover BAG``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from openhelix_ros.common.environment import project_root

BAG_VERSION = 9
STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rmw's "infinite" duration, as rosbag2 writes it into metadata.yaml.
_INFINITE = QosTime(sec=9223372036, nsec=854775807)
_TYPE_NAME = re.compile(r"^[A-Za-z_]\w*/msg/[A-Za-z_]\w*$")


class UnknownTypeError(ValueError):
    """A message type whose definition is nowhere to be found, so it cannot be recorded."""


class RecordingError(RuntimeError):
    """The bag cannot be opened or written (bad output path, closed bag)."""


def default_msg_dirs() -> list[Path]:
    """Where openhelix_msgs' ``.msg`` files are: the source tree first, then the installed copy."""
    dirs = [project_root() / "src" / "openhelix_msgs" / "msg"]
    dirs += [Path(prefix) / "share" / "openhelix_msgs" / "msg" for prefix in _ament_prefixes()]
    return [d for d in dirs if d.is_dir()]


def _ament_prefixes() -> list[str]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if os.environ.get("VIRTUAL_ENV"):
        prefixes.append(os.environ["VIRTUAL_ENV"])
    import sys
    prefixes.append(sys.prefix)  # the venv, where the ROS wheels install their share/ directories
    return list(dict.fromkeys(prefixes))


def register_msg_files(typestore: Typestore, paths: Iterable[Path], package: str) -> list[str]:
    """Register every ``.msg`` file of ``paths`` as ``<package>/msg/<stem>``; return the type names."""
    types = {}
    names = []
    for path in sorted(paths):
        name = f"{package}/msg/{path.stem}"
        types.update(get_types_from_msg(path.read_text(), name))
        names.append(name)
    typestore.register(types)
    return names


def build_typestore(msg_dirs: Sequence[Path] | None = None) -> Typestore:
    """ROS 2 kilted's standard types plus openhelix_msgs (from ``msg_dirs``, default: found ones)."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    for directory in msg_dirs if msg_dirs is not None else default_msg_dirs()[:1]:
        register_msg_files(typestore, Path(directory).glob("*.msg"), "openhelix_msgs")
    return typestore


def ensure_type(typestore: Typestore, type_name: str, _depth: int = 0) -> None:
    """Make ``type_name`` (``pkg/msg/Type``) and the types it uses known to ``typestore``.

    Looks for ``share/<pkg>/msg/<Type>.msg`` under the ament prefixes when the store lacks it.
    Raises UnknownTypeError naming the type (and what was searched) when it cannot be found.
    """
    if not _TYPE_NAME.match(type_name):
        raise UnknownTypeError(f"{type_name!r} is not a message type name (expected pkg/msg/Type)")
    if type_name not in typestore.fielddefs:
        package, _, name = type_name.split("/")
        candidates = [Path(prefix) / "share" / package / "msg" / f"{name}.msg" for prefix in _ament_prefixes()]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise UnknownTypeError(f"message type {type_name} is unknown: not a standard ROS 2 kilted type and "
                                   f"no {package}/msg/{name}.msg under {', '.join(_ament_prefixes()) or 'any prefix'}")
        typestore.register(get_types_from_msg(found.read_text(), type_name))
    if _depth > 32:
        raise UnknownTypeError(f"message type {type_name} nests too deeply to resolve")
    # Field types that are messages themselves must be known too, or no definition can be written.
    for _, (kind, detail) in typestore.fielddefs[type_name][1]:
        for nested in _nested_type_names(kind, detail):
            ensure_type(typestore, nested, _depth + 1)


def _nested_type_names(kind, detail) -> list[str]:
    # rosbags field definitions: (Nodetype, payload); NAME = 2 holds a type name; sequences/arrays
    # (3, 4) hold an element definition.
    value = getattr(kind, "value", kind)
    if value == 2:
        return [detail if "/msg/" in detail else detail.replace("/", "/msg/", 1)]
    if value in (3, 4):
        element = detail[0]
        return _nested_type_names(element[0], element[1])
    return []


def offered_qos(reliability: str, durability: str, history: str = "KEEP_LAST", depth: int = 1) -> Qos:
    """A rosbags Qos (what ``metadata.yaml`` lists as offered_qos_profiles) from policy names, as both
    rclpy's and rosbags' enums spell them (``RELIABLE``, ``TRANSIENT_LOCAL``, ...)."""
    return Qos(history=QosHistory[history.upper()], depth=int(depth),
               reliability=QosReliability[reliability.upper()], durability=QosDurability[durability.upper()],
               deadline=_INFINITE, lifespan=_INFINITE, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_INFINITE, avoid_ros_namespace_conventions=False)


@dataclass
class TopicStats:
    """What has been recorded on one topic."""

    type_name: str
    messages: int = 0
    bytes: int = 0


class BagRecorder:
    """A rosbag2 bag being written: open, add topics, write serialized messages, close.

    ``close`` is idempotent and leaves a complete bag (MCAP summary + metadata.yaml); call it from a
    ``finally`` or a shutdown hook, never from inside a signal handler.
    """

    def __init__(self, output: Path | str, storage: str = "mcap", typestore: Typestore | None = None) -> None:
        if storage not in STORAGE_PLUGINS:
            raise RecordingError(f"storage must be one of {', '.join(STORAGE_PLUGINS)}, got {storage!r}")
        self.output = Path(output).expanduser().absolute()
        self.storage = storage
        self.typestore = typestore if typestore is not None else build_typestore()
        self.topics: dict[str, TopicStats] = {}
        self._connections = {}
        self._writer: Writer | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def open(self) -> None:
        """Create the bag directory. Its parent must exist and it must not (a bag is never overwritten)."""
        if not self.output.parent.is_dir():
            raise RecordingError(f"cannot create bag {self.output}: parent directory {self.output.parent} "
                                 f"does not exist")
        if self.output.exists():
            raise RecordingError(f"cannot create bag {self.output}: it exists already (bags are never overwritten)")
        writer = Writer(self.output, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[self.storage])
        try:
            writer.open()
        except Exception as error:  # rosbags raises its own WriterError, or an OSError
            raise RecordingError(f"cannot create bag {self.output}: {error}") from error
        self._writer = writer

    def add_topic(self, topic: str, type_name: str, qos_profiles: Sequence[Qos] = ()) -> None:
        """Declare a topic; raises UnknownTypeError when its type's definition cannot be found."""
        if self._writer is None:
            raise RecordingError("the bag is not open")
        if topic in self.topics:
            raise RecordingError(f"topic {topic} is already recorded as {self.topics[topic].type_name}")
        ensure_type(self.typestore, type_name)
        self._connections[topic] = self._writer.add_connection(
            topic, type_name, typestore=self.typestore, offered_qos_profiles=list(qos_profiles))
        self.topics[topic] = TopicStats(type_name)

    def write(self, topic: str, data: bytes | memoryview, timestamp_ns: int) -> None:
        """Append one serialized (CDR) message received at ``timestamp_ns``."""
        if self._writer is None:
            raise RecordingError("the bag is not open (closed already, or never opened)")
        if topic not in self._connections:
            raise RecordingError(f"topic {topic} was never added to the bag")
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        stats = self.topics[topic]
        stats.messages += 1
        stats.bytes += len(data)

    @property
    def message_count(self) -> int:
        return sum(stats.messages for stats in self.topics.values())

    def close(self) -> None:
        """Finish the bag: MCAP summary and index, then metadata.yaml. Safe to call more than once."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self) -> BagRecorder:
        self.open()
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Recovery of a bag whose recorder died without closing it (SIGKILL, power loss, out of memory)
#
# Such a bag has no metadata.yaml and its MCAP file has no summary or footer, so readers refuse it. Every
# chunk the writer completed (about 1 MiB of messages each) is on disk, though: the file is a sequence
# of records (opcode u8, length u64, body), and rosbags puts the schemas, channels and messages inside
# chunk records. recover_bag() walks the complete records and writes the messages into a new bag.

_MCAP_MAGIC = b"\x89MCAP0\r\n"


class _Cursor:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise EOFError
        view = self.data[self.pos:self.pos + size]
        self.pos += size
        return view

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def string(self) -> str:
        return bytes(self.take(self.uint(4))).decode()


def _mcap_records(data: bytes | memoryview):
    """(opcode, body) of each complete record; stops quietly at a truncated one."""
    cursor = _Cursor(data)
    while True:
        try:
            opcode = cursor.uint(1)
            body = cursor.take(cursor.uint(8))
        except EOFError:
            return
        yield opcode, body


def scan_mcap(path: Path):
    """The channels and messages of every complete chunk of an MCAP file written by rosbags, closed
    properly or not, in file order: ``("channel", id, topic, type)`` (before the channel's first message,
    as rosbags writes them) and ``("message", channel id, log time ns, CDR bytes)``.

    The file is mapped, not read: a bag of any size costs one message of memory at a time (each is
    bounded by its chunk, which is bounded by the file)."""
    import mmap

    with open(path, "rb") as file:
        if file.read(len(_MCAP_MAGIC)) != _MCAP_MAGIC:
            raise RecordingError(f"{path} is not an MCAP file")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                yield from _scan_chunks(path, view[len(_MCAP_MAGIC):])
            finally:
                view.release()


def _scan_chunks(path: Path, records: memoryview):
    schemas: dict[int, str] = {}
    for opcode, body in _mcap_records(records):
        if opcode != 0x06:  # only chunks hold what we need; indexes and summary are rebuilt
            continue
        chunk = _Cursor(body)
        chunk.take(8 + 8 + 8 + 4)  # start time, end time, uncompressed size, crc
        if chunk.string():
            raise RecordingError(f"{path} has compressed chunks, which recovery does not decompress")
        for inner, record in _mcap_records(chunk.take(chunk.uint(8))):
            fields = _Cursor(record)
            if inner == 0x03:  # schema: id, name, encoding, data
                schema_id = fields.uint(2)  # (read before the name: order matters on a cursor)
                schemas[schema_id] = fields.string()
            elif inner == 0x04:  # channel: id, schema id, topic, message encoding, metadata
                channel_id, schema_id = fields.uint(2), fields.uint(2)
                yield "channel", channel_id, fields.string(), schemas.get(schema_id, "")
            elif inner == 0x05:  # message: channel id, sequence, log time, publish time, data
                channel_id = fields.uint(2)
                fields.take(4)
                log_time = fields.uint(8)
                fields.take(8)
                yield "message", channel_id, log_time, bytes(record[fields.pos:])


def recover_bag(broken: Path | str, output: Path | str | None = None,
                typestore: Typestore | None = None) -> BagRecorder:
    """Write every message of the complete chunks of ``broken`` (a bag directory without
    metadata.yaml, or its .mcap file) into a new, closed bag at ``output`` (default:
    ``<broken>-recovered``). The broken bag is left untouched. Returns the closed recorder, whose
    ``topics`` say how many messages each topic got back."""
    broken = Path(broken)
    files = [broken] if broken.is_file() else sorted(broken.glob("*.mcap"))
    if not files:
        raise RecordingError(f"no .mcap file in {broken}")
    target = Path(output) if output is not None else broken.with_name(broken.name + "-recovered")
    bag = BagRecorder(target, storage="mcap", typestore=typestore)
    bag.open()
    try:
        for path in files:
            topics: dict[int, str] = {}
            for kind, channel_id, *rest in scan_mcap(path):
                if kind == "channel":
                    topic, type_name = rest
                    topics[channel_id] = topic
                    if topic not in bag.topics:
                        bag.add_topic(topic, type_name)
                elif channel_id in topics:  # a message of a channel whose record was lost: nothing to file it under
                    log_time, data = rest
                    bag.write(topics[channel_id], data, log_time)
    finally:
        bag.close()
    return bag


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m openhelix_ros.recording.core recover BAG [OUTPUT]``: rescue a bag a crash left open."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m openhelix_ros.recording.core")
    commands = parser.add_subparsers(dest="command", required=True)
    recover = commands.add_parser("recover", help="rescue the complete chunks of a bag a crash left open")
    recover.add_argument("bag", type=Path)
    recover.add_argument("output", type=Path, nargs="?")
    args = parser.parse_args(argv)
    try:
        bag = recover_bag(args.bag, args.output)
    except (RecordingError, UnknownTypeError, OSError) as error:
        print(f"recovery failed: {error}")
        return 1
    counts = ", ".join(f"{topic}: {stats.messages}" for topic, stats in sorted(bag.topics.items()))
    print(f"recovered {bag.message_count} messages into {bag.output} ({counts or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
