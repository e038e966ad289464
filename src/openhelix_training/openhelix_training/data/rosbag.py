"""Demonstrations from this project's rosbag2 bags (MCAP or sqlite3, read with `rosbags`).

Topics (names relative, as the recorder writes them; a namespace prefix is accepted): `scene_state`
(openhelix_msgs/SceneState: CALVIN robot_obs/scene_obs), `points` (sensor_msgs/PointCloud2 xyz + rgb in
`world`), `instruction` (openhelix_msgs/Instruction), optional `camera/static/image_raw`
(sensor_msgs/Image, rgb8/bgr8) for System 2, and `ee_trajectory` (openhelix_msgs/EETrajectory: what the
demonstrator commanded, for `trajectory="commands"`). Every scene_state message is one frame, paired
with the newest cloud, image and instruction received before it and with the command stamped like it;
a new instruction (text or sequence) starts a new demonstration segment, within which keyposes and
trajectories are found as for CALVIN data.

What one message may ask of memory is bounded as on the live graph (limits.py): a message of more than
MAX_BAG_MESSAGE_BYTES, a cloud of more than MAX_CLOUD_POINTS points or MAX_POINT_FIELDS fields, an
image of more than MAX_IMAGE_PIXELS pixels, or sizes its data cannot hold, make the bag refused with
a BagDataError naming the topic, the time and the limit, before anything of that size is allocated.

A path may also be a directory of bags (what `openhelix collect` writes under runs/<name>/bags/): every
bag directly inside it is read, in name order; `failed/` (episodes the oracle did not pass) is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..limits import MAX_BAG_MESSAGE_BYTES, MAX_CLOUD_POINTS, MAX_IMAGE_PIXELS, MAX_POINT_FIELDS, check_bound
from ..observation import Observation
from .sample import Sample
from .trajectory import (
    discover_keyposes,
    trajectory_of_commands,
    trajectory_of_next_frames,
    trajectory_to_next_keypose,
)

TRAJECTORY_KINDS = ("keypose", "frames", "commands")

MSG_PACKAGE = "openhelix_msgs"


class BagDataError(ValueError):
    """A bag that cannot be read into samples."""


def msg_dir() -> Path:
    """$OPENHELIX_MSG_DIR, else openhelix_msgs/msg in the source tree, else the installed share directory."""
    import os
    import sys

    if os.environ.get("OPENHELIX_MSG_DIR"):
        return Path(os.environ["OPENHELIX_MSG_DIR"])
    source = Path(__file__).resolve().parents[3] / "openhelix_msgs" / "msg"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / MSG_PACKAGE / "msg"


def typestore_with_project_types(msg_directory: Path | None = None):
    """A rosbags typestore (ROS 2 kilted) with openhelix_msgs registered from the .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    directory = Path(msg_directory) if msg_directory else msg_dir()
    if not directory.is_dir():
        raise BagDataError(f"openhelix_msgs .msg files not found in {directory} (set OPENHELIX_MSG_DIR)")
    types = {}
    for path in sorted(directory.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{MSG_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


# The bytes each field read here takes (float32 coordinates, packed colour, or one byte a channel).
FIELD_BYTES = {"x": 4, "y": 4, "z": 4, "rgb": 4, "rgba": 4, "r": 1, "g": 1, "b": 1}


def pointcloud2_to_arrays(msg) -> tuple[np.ndarray, np.ndarray]:
    """xyz (N, 3) float32 and rgb (N, 3) uint8 from a PointCloud2 with x, y, z and either a packed `rgb`
    (float32 or uint32 holding 0x00RRGGBB) or separate r, g, b uint8 fields."""
    check_bound("PointCloud2", len(msg.fields), MAX_POINT_FIELDS, "fields", "MAX_POINT_FIELDS", BagDataError)
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in fields:
            raise BagDataError(f"PointCloud2 lacks field '{name}' (has {sorted(fields)})")
    n = int(msg.width) * int(msg.height)
    check_bound("PointCloud2", n, MAX_CLOUD_POINTS, "points", "MAX_CLOUD_POINTS", BagDataError)
    step = int(msg.point_step)
    for name, size in FIELD_BYTES.items():
        if name in fields and fields[name].offset + size > step:
            raise BagDataError(f"PointCloud2 field '{name}' at offset {fields[name].offset} lies outside its "
                               f"point_step of {step} bytes")
    if len(msg.data) < n * step:
        raise BagDataError(f"PointCloud2 data has {len(msg.data)} bytes, expected {n * step}")
    buf = np.frombuffer(msg.data, dtype=np.uint8) if isinstance(msg.data, np.ndarray) else \
        np.frombuffer(bytes(msg.data), dtype=np.uint8)
    rows = buf[: n * msg.point_step].reshape(n, msg.point_step)
    endian = ">" if msg.is_bigendian else "<"

    def col(name, dtype):
        off = fields[name].offset
        return rows[:, off : off + np.dtype(dtype).itemsize].copy().view(endian + dtype).reshape(-1)

    xyz = np.stack([col(a, "f4") for a in "xyz"], axis=1).astype(np.float32)
    if "rgb" in fields or "rgba" in fields:
        packed = col("rgb" if "rgb" in fields else "rgba", "u4")
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    elif all(c in fields for c in "rgb"):
        rgb = np.stack([col(c, "u1") for c in "rgb"], axis=1)
    else:
        raise BagDataError(f"PointCloud2 has no colour (fields {sorted(fields)}); expected rgb or r, g, b")
    keep = np.all(np.isfinite(xyz), axis=1)
    return xyz[keep], rgb[keep]


def image_to_array(msg) -> np.ndarray:
    h, w, enc = int(msg.height), int(msg.width), msg.encoding.lower()
    check_bound("image", h * w, MAX_IMAGE_PIXELS, "pixels", "MAX_IMAGE_PIXELS", BagDataError)
    channels = 3 if enc in ("rgb8", "bgr8") else 4 if enc in ("rgba8", "bgra8") else None
    if channels is not None and (int(msg.step) < w * channels or len(msg.data) < h * int(msg.step)):
        raise BagDataError(f"image of {w}x{h} {enc} with step {msg.step} needs {h * max(int(msg.step), w * channels)} "
                           f"bytes, its data has {len(msg.data)}")
    data = np.frombuffer(msg.data, dtype=np.uint8) if isinstance(msg.data, np.ndarray) else \
        np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if enc in ("rgb8", "bgr8"):
        img = data.reshape(h, int(msg.step))[:, : w * 3].reshape(h, w, 3)
        return img[..., ::-1].copy() if enc == "bgr8" else img.copy()
    if enc in ("rgba8", "bgra8"):
        img = data.reshape(h, int(msg.step))[:, : w * 4].reshape(h, w, 4)[..., :3]
        return img[..., ::-1].copy() if enc == "bgra8" else img.copy()
    raise BagDataError(f"image encoding {msg.encoding!r} not supported (rgb8, bgr8, rgba8, bgra8)")


def topic_is(topic: str, name: str) -> bool:
    """Whether a recorded topic is the graph topic ``name``, under any namespace (``/ns/points`` is ``points``)."""
    return topic == name or topic.endswith("/" + name)


def is_bag(path: Path) -> bool:
    """A rosbag2 directory (metadata.yaml), or an MCAP / sqlite3 file of one."""
    path = Path(path)
    return (path / "metadata.yaml").is_file() or (path.is_file() and path.suffix in (".mcap", ".db3"))


def expand_bag_paths(paths) -> list[Path]:
    """Bag directories, with each directory of bags replaced by the bags directly inside it (name order,
    `failed/` left out: the demonstrations the oracle did not pass)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    out = []
    for p in paths:
        if not p.exists():
            raise BagDataError(f"bag {p} does not exist")
        if is_bag(p) or not p.is_dir():
            out.append(p)
            continue
        inner = sorted(c for c in p.iterdir() if c.is_dir() and c.name != "failed" and is_bag(c))
        if not inner:
            raise BagDataError(f"{p} is neither a bag (no metadata.yaml) nor a directory of bags")
        out += inner
    return out


class _Frame(NamedTuple):
    """One scene_state message with what it is paired with: the newest cloud, image and instruction."""

    robot_obs: np.ndarray
    cloud: tuple[np.ndarray, np.ndarray]  # xyz, rgb
    image: np.ndarray | None
    instruction: tuple[str, str, int]  # text, task, sequence
    stamp: int  # ns
    gripper_image: np.ndarray | None = None  # the wrist camera's, when recorded (2D image policies)


def read_bag_samples(path, trajectory_length: int = 20, frames: str = "keyposes", latent_delay: int = 0,
                     image_size: int = 200, max_points: int | None = None, seed: int = 0,
                     trajectory: str = "keypose") -> list[Sample]:
    """All samples of one bag directory (or a list of them, read as one recording).

    max_points: keep a random subset (seeded) of at most this many points of every cloud. System 1 reads
    a random `max_input_points` subset of a cloud anyway; a whole 29k-point cloud per frame would hold
    gigabytes in memory over a few thousand frames.
    trajectory: "keypose" (3D Diffuser Actor's: to the next keypose, resampled to trajectory_length) or
    "frames" (the next trajectory_length recorded frames, one per control step; see
    trajectory_of_next_frames) or "commands" (the demonstrator's commanded targets from `ee_trajectory`,
    one per control step; see trajectory_of_commands: what a policy in the graph must output)."""
    if trajectory not in TRAJECTORY_KINDS:
        raise ValueError(f"trajectory must be one of {', '.join(TRAJECTORY_KINDS)}, got {trajectory!r}")
    paths = _existing_bag_paths(path)
    recorded, commands = _read_frames_and_commands(paths, trajectory == "commands", max_points, seed)
    if not recorded:
        raise BagDataError(f"bag {paths[0]}: no scene_state message after a points and an instruction message")
    if trajectory == "commands" and not commands:
        raise BagDataError(f"bag {paths[0]}: trajectory 'commands' needs the demonstrator's ee_trajectory "
                           "messages, and the bag has none (record ee_trajectory, or use 'frames')")
    samples = []
    for index, segment in enumerate(_split_by_instruction(recorded)):
        if len(segment) >= 2:
            samples += _samples_of_segment(segment, f"{paths[0]}#{index}", commands, trajectory_length, frames,
                                           latent_delay, image_size, trajectory)
    return samples


def _existing_bag_paths(path) -> list[Path]:
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    for p in paths:
        if not p.exists():
            raise BagDataError(f"bag {p} does not exist")
    return paths


def _read_frames_and_commands(paths: list[Path], with_commands: bool, max_points: int | None,
                              seed: int) -> tuple[list[_Frame], dict]:
    """Every scene_state paired with the newest cloud, images and instruction before it (states before the
    first cloud, instruction and image of each recorded camera are skipped), and the commands:
    observation stamp ns -> (position, rotation matrix, gripper) of the first waypoint of the ee_trajectory
    stamped like it."""
    from rosbags.highlevel import AnyReader

    store = typestore_with_project_types()
    rng = np.random.default_rng(seed)
    recorded: list[_Frame] = []
    latest = {"points": None, "image": None, "gripper_image": None, "instruction": None}
    commands = {}
    topics = ("scene_state", "points", "instruction", "camera/static/image_raw", "camera/gripper/image_raw") + (
        ("ee_trajectory",) if with_commands else ())
    try:
        with AnyReader(paths, default_typestore=store) as reader:
            wanted = [c for c in reader.connections if any(topic_is(c.topic, t) for t in topics)]
            # a bag that records a camera pairs every state with an image of it: states before the first
            # one are skipped like those before the first cloud (an image policy has nothing to read there)
            cameras = [key for key, topic in (("image", "camera/static/image_raw"),
                                              ("gripper_image", "camera/gripper/image_raw"))
                       if any(topic_is(c.topic, topic) for c in wanted)]
            # (rosbags reads every connection when given none)
            for conn, log_time, raw in (reader.messages(connections=wanted) if wanted else ()):
                check_bound(f"bag message of {conn.topic} at {log_time} ns", len(raw), MAX_BAG_MESSAGE_BYTES,
                            "bytes", "MAX_BAG_MESSAGE_BYTES", BagDataError)
                msg = reader.deserialize(raw, conn.msgtype)
                if topic_is(conn.topic, "ee_trajectory"):
                    stamp = _stamp_ns(msg.header)
                    if len(msg.poses) and stamp not in commands:  # a re-sent observation's answer repeats it
                        commands[stamp] = _first_waypoint(msg)
                elif topic_is(conn.topic, "points"):
                    latest["points"] = _cloud_subset(msg, max_points, rng)
                elif topic_is(conn.topic, "camera/static/image_raw"):
                    latest["image"] = image_to_array(msg)
                elif topic_is(conn.topic, "camera/gripper/image_raw"):
                    latest["gripper_image"] = image_to_array(msg)
                elif topic_is(conn.topic, "instruction"):
                    latest["instruction"] = (str(msg.text), str(msg.task), int(msg.sequence))
                elif topic_is(conn.topic, "scene_state"):
                    if latest["points"] is None or latest["instruction"] is None or any(
                            latest[key] is None for key in cameras):
                        continue  # nothing to pair the state with yet
                    if recorded and recorded[-1].stamp == _stamp_ns(msg.header):
                        continue  # the lockstep bridge re-sent an observation it got no plan for: one frame
                    recorded.append(_Frame(np.asarray(msg.robot_obs, dtype=np.float64), latest["points"],
                                           latest["image"], latest["instruction"], _stamp_ns(msg.header),
                                           latest["gripper_image"]))
    except BagDataError as exc:
        raise BagDataError(f"bag {', '.join(map(str, paths))}: {exc}") from exc
    except Exception as exc:  # rosbags raises several unrelated types for corrupt bags
        raise BagDataError(f"cannot read bag {', '.join(map(str, paths))}: {type(exc).__name__}: {exc}") from exc
    return recorded, commands


def _first_waypoint(msg) -> tuple[tuple[float, float, float], np.ndarray, float]:
    """An EETrajectory's first waypoint: position, rotation matrix and gripper (NaN without one)."""
    from ..geometry import quaternion_wxyz_to_matrix

    pose = msg.poses[0]
    q = pose.orientation
    return ((pose.position.x, pose.position.y, pose.position.z),
            quaternion_wxyz_to_matrix(np.array([q.w, q.x, q.y, q.z])),
            float(msg.gripper[0]) if len(msg.gripper) else np.nan)


def _cloud_subset(msg, max_points: int | None, rng) -> tuple[np.ndarray, np.ndarray]:
    """A PointCloud2's finite xyz and rgb, a random subset of at most ``max_points`` of them (in order)."""
    xyz, rgb = pointcloud2_to_arrays(msg)
    if max_points and len(xyz) > max_points:
        keep = np.sort(rng.choice(len(xyz), int(max_points), replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    return xyz, rgb


def _split_by_instruction(recorded: list[_Frame]) -> list[list[_Frame]]:
    """Consecutive frames under one instruction (text, task and sequence) form one segment."""
    segments, current = [], [recorded[0]]
    for frame in recorded[1:]:
        if frame.instruction != current[-1].instruction:
            segments.append(current)
            current = []
        current.append(frame)
    segments.append(current)
    return segments


def _samples_of_segment(segment: list[_Frame], episode: str, commands: dict, trajectory_length: int, frames: str,
                        latent_delay: int, image_size: int, trajectory: str) -> list[Sample]:
    """The samples of one demonstration segment: at its keyposes (``frames="keyposes"``) or at every frame
    but the last, each with the trajectory of kind ``trajectory`` from there."""
    from ..modeling_system1 import proprio_from_robot_obs

    ro = np.stack([f.robot_obs for f in segment])
    # the gripper command of frame i is the "last gripper action" recorded at frame i + 1
    grip = np.r_[ro[1:, 14], ro[-1, 14]]
    keys = discover_keyposes(ro[:, :3], grip)
    local = [0] + [k for k in keys[:-1] if k > 0] if frames == "keyposes" else range(len(segment) - 1)
    if trajectory == "commands":
        command_pos, command_rot, command_grip = _commands_of_segment(segment, ro, commands)
    samples = []
    for i in local:
        if trajectory == "commands":
            traj = trajectory_of_commands(ro[:, :3], ro[:, 3:6], ro[:, 14], command_pos, command_rot,
                                          command_grip, i, trajectory_length)
        elif trajectory == "frames":
            traj = trajectory_of_next_frames(ro[:, :3], ro[:, 3:6], ro[:, 14], i, trajectory_length)
        else:
            traj = trajectory_to_next_keypose(ro[:, :3], ro[:, 3:6], grip, i, keys, trajectory_length)
        xyz, rgb = segment[i].cloud
        img = segment[max(0, i - latent_delay)].image
        if img is None:
            img = np.zeros((image_size, image_size, 3), np.uint8)  # no camera recorded: blank for System 2
        text, task, _seq = segment[i].instruction
        # what a 2D image policy reads: the cameras' pixels of this frame (System 2's image may be older)
        views = [segment[i].image, segment[i].gripper_image]
        images = [v for v in views if v is not None] if views[0] is not None else None
        samples.append(Sample(observation=Observation(points=xyz, colors=rgb, images=images), image=img,
                              instruction=text,
                              proprio=proprio_from_robot_obs(ro[i]), rel_positions=traj["rel_positions"],
                              rot6d=traj["rot6d"], gripper_open=traj["gripper_open"], task=task,
                              episode=episode, frame=i, meta={"keypose": traj["keypose"]}))
    return samples


def _stamp_ns(header) -> int:
    """A deserialized std_msgs/Header's stamp in integer nanoseconds (exact, for matching stamps)."""
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def _commands_of_segment(segment: list[_Frame], robot_obs: np.ndarray, commands: dict):
    """Per frame of a segment, the command answering its observation: (N, 3) positions, (N, 3, 3)
    rotations, (N,) gripper. A frame nobody answered (the demonstrator had not started, or the bag ends
    before its answer) takes the next recorded pose and gripper action: where the tool went anyway."""
    from ..geometry import euler_xyz_to_matrix

    n = len(segment)
    positions, rotations, gripper = np.empty((n, 3)), np.empty((n, 3, 3)), np.empty(n)
    for i, frame in enumerate(segment):
        command = commands.get(frame.stamp)
        if command is not None and np.isfinite(command[2]):
            positions[i], rotations[i], gripper[i] = command
        else:
            after = min(i + 1, n - 1)
            positions[i] = robot_obs[after, :3]
            rotations[i] = euler_xyz_to_matrix(robot_obs[after, 3:6])
            gripper[i] = robot_obs[after, 14]
    return positions, rotations, gripper


class BagDataset:
    """Samples of one or more bags, loaded into memory (bags of demonstrations are small)."""

    def __init__(self, paths, **kwargs):
        self.bags = expand_bag_paths(paths)
        self.samples = []
        for i, p in enumerate(self.bags):
            self.samples += read_bag_samples(p, **{"seed": i, **kwargs})

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def tasks(self) -> list[str]:
        """The CALVIN task ids the demonstrations perform (from their instructions), sorted."""
        return sorted({s.task for s in self.samples if s.task})

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def write_synthetic_bag(path, frames: int = 12, resent: tuple[int, ...] = (), first_image: int = 0):
    """Writes a small MCAP bag with the recorder's topics and types (points, camera/static/image_raw,
    scene_state, instruction, ee_trajectory): one "open the drawer" demonstration where the tool moves
    along x by 1 cm per frame and the gripper closes after frame 6. The demonstrator's command answering
    frame i (ee_trajectory stamped like it) leads the tool as a real controller's does: x = 0.01 (i + 2),
    gripper -1 from frame 6 on; the last frame has no answer. Returns the cloud's xyz, its rgb and the
    robot_obs of every frame. Frames in ``resent`` are published twice (cloud, image and state), as a
    lockstep bridge re-sends an observation it got no plan for. Images start at frame ``first_image`` (a
    recorder that matched the camera late)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore_with_project_types()
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    PointField, PointCloud2 = T["sensor_msgs/msg/PointField"], T["sensor_msgs/msg/PointCloud2"]
    Image, SceneState, Instruction = T["sensor_msgs/msg/Image"], T["openhelix_msgs/msg/SceneState"], \
        T["openhelix_msgs/msg/Instruction"]
    EETrajectory, Pose, Duration = T["openhelix_msgs/msg/EETrajectory"], T["geometry_msgs/msg/Pose"], \
        T["builtin_interfaces/msg/Duration"]
    Point, Quaternion = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.5, 0.5, (300, 3)).astype(np.float32)
    rgb = rng.integers(0, 255, (300, 3)).astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    rec = np.zeros(300, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    rec["x"], rec["y"], rec["z"], rec["rgb"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], packed
    fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in
              [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 6)]]
    robot = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_pts = w.add_connection("/points", PointCloud2.__msgtype__, typestore=store)
        c_img = w.add_connection("/camera/static/image_raw", Image.__msgtype__, typestore=store)
        c_ss = w.add_connection("/scene_state", SceneState.__msgtype__, typestore=store)
        c_in = w.add_connection("/instruction", Instruction.__msgtype__, typestore=store)
        c_tr = w.add_connection("/ee_trajectory", EETrajectory.__msgtype__, typestore=store)
        for i in range(frames):
            ns = 1_000_000_000 + i * 33_000_000
            hdr = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="world")
            if i == 0:
                w.write(c_in, ns, store.serialize_cdr(Instruction(header=hdr, text="open the drawer",
                                                                  task="open_drawer", sequence=1),
                                                      Instruction.__msgtype__))
            cloud = PointCloud2(header=hdr, height=1, width=300, fields=fields, is_bigendian=False, point_step=16,
                                row_step=16 * 300, data=np.frombuffer(rec.tobytes(), np.uint8), is_dense=True)
            img = np.full((20, 30, 3), i % 256, np.uint8)  # frame i (mod 256: uint8)
            ro = np.zeros(15)
            ro[:3] = (0.01 * i, 0.0, 0.3)
            ro[3:6] = (np.pi, 0.0, 0.0)
            ro[14] = 1.0 if i <= 6 else -1.0  # last gripper action: closes after frame 6
            robot.append(ro)
            for copy in range(2 if i in resent else 1):
                sent = ns + copy * 10_000_000  # a re-send goes out later, with the observation's stamp
                w.write(c_pts, sent + 1, store.serialize_cdr(cloud, PointCloud2.__msgtype__))
                if i >= first_image:
                    w.write(c_img, sent + 2, store.serialize_cdr(
                        Image(header=hdr, height=20, width=30, encoding="rgb8", is_bigendian=0, step=90,
                              data=img.reshape(-1)), Image.__msgtype__))
                w.write(c_ss, sent + 3, store.serialize_cdr(
                    SceneState(header=hdr, robot_obs=ro, scene_obs=np.zeros(24), robot_obs_labels=[],
                               scene_obs_labels=[], step=i, plans=i), SceneState.__msgtype__))
            if i < frames - 1:
                # tool pointing down (roll pi): quaternion x, y, z, w = 1, 0, 0, 0
                pose = Pose(position=Point(x=0.01 * (i + 2), y=0.0, z=0.3),
                            orientation=Quaternion(x=1.0, y=0.0, z=0.0, w=0.0))
                command = EETrajectory(header=hdr, poses=[pose], gripper=np.array([1.0 if i < 6 else -1.0],
                                                                                   np.float32),
                                       waypoint_period=Duration(sec=0, nanosec=33_333_333), sequence=i,
                                       latent_sequence=0, latent_stamp=Time(sec=0, nanosec=0),
                                       inference_time=0.0)
                w.write(c_tr, ns + 4, store.serialize_cdr(command, EETrajectory.__msgtype__))
    return xyz, rgb.astype(np.uint8), np.stack(robot)
