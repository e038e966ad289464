"""Peer process: publishes randomised malformed messages of every type the graph's nodes subscribe, at the
running graph, as an outside process would.

For each round, every topic gets each of its malformed cases once, in a random order, with random values
where a case has them: huge headers over tiny data, empty, NaN and infinite values, wrong frames,
mismatched array lengths, far-future stamps, and invalid UTF-8 strings. The invalid UTF-8 ones are
serialised messages with the string's bytes replaced, since rclpy cannot make such a message itself.
Prints READY once every publisher has matched a subscriber (or after ``--match-timeout`` s), one line
``SENT <topic> <case>`` per message, and ``DONE <count>`` at the end.
"""

import argparse
import math
import random
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Pose, PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState, PointCloud2, PointField
from std_msgs.msg import Bool, Header

from openhelix_msgs.msg import EETrajectory, GoalLatent, Instruction

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# goal_latent and estop readers are transient local: a volatile writer would not match them.
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
FAR_FUTURE = Time(sec=2_000_000_000, nanosec=999_999_999)
MARK = "QQQQ"  # a string whose bytes are replaced by invalid UTF-8 in the serialised message
INVALID_UTF8 = b"\xff\xfe\xc3\x28"


def header(frame: str = "world", stamp: Time | None = None) -> Header:
    return Header(frame_id=frame, stamp=stamp or Time(sec=0, nanosec=0))


def cloud(rng, points: int, *, frame="world", fields=None, point_step=16, claim=None, data=None, stamp=None):
    fields = fields if fields is not None else [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
        PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1)]
    width, height = claim if claim is not None else (points, 1)
    if data is None:
        data = rng.normal(size=(points, 4)).astype(np.float32).tobytes()
    return PointCloud2(header=header(frame, stamp), height=height, width=width, fields=fields, is_bigendian=False,
                       point_step=point_step, row_step=point_step * width, data=data, is_dense=False)


def cloud_cases(rng):
    nan = np.full((50, 4), np.nan, dtype=np.float32)
    nan[::2, :3] = np.inf
    return {
        "huge_header": cloud(rng, 4, claim=(100_000, 100_000)),
        "empty": cloud(rng, 0),
        "nan_and_inf": cloud(rng, 50, data=nan.tobytes()),
        "wrong_frame": cloud(rng, 100, frame="map"),
        "no_z": cloud(rng, 10, fields=[PointField(name="x", offset=0, datatype=7, count=1),
                                       PointField(name="y", offset=4, datatype=7, count=1)]),
        "short_data": cloud(rng, 100, data=bytes(17)),
        "zero_point_step": cloud(rng, 10, point_step=0),
        "unknown_datatype": cloud(rng, 10, fields=[PointField(name="x", offset=0, datatype=99, count=1)]),
        "duplicate_fields": cloud(rng, 10, fields=[PointField(name="x", offset=0, datatype=7, count=1)] * 3),
        "many_fields": cloud(rng, 10, fields=[PointField(name=f"f{i}", offset=0, datatype=7, count=1)
                                              for i in range(500)]),
        "far_future": cloud(rng, 200, stamp=FAR_FUTURE),
        "huge_values": cloud(rng, 100, data=(rng.normal(size=(100, 4)) * 1e30).astype(np.float32).tobytes()),
        "invalid_utf8_frame": cloud(rng, 10, frame=MARK),
    }


def image_cases(rng):
    def image(width, height, encoding="rgb8", step=None, data=None, frame="static_camera", stamp=None):
        step = width * 3 if step is None else step
        data = bytes(rng.integers(0, 255, step * height, dtype=np.uint8)) if data is None else data
        return Image(header=header(frame, stamp), height=height, width=width, encoding=encoding, is_bigendian=0,
                     step=step, data=data)

    return {
        "huge_header": image(100_000, 100_000, step=300_000, data=bytes(30)),
        "empty": image(0, 0),
        "mono8": image(16, 16, "mono8", step=16),
        "unknown_encoding": image(8, 8, "yuv422_weird"),
        "step_too_small": image(32, 8, step=10, data=bytes(80)),
        "short_data": image(64, 64, data=bytes(100)),
        "far_future": image(32, 32, stamp=FAR_FUTURE),
        "invalid_utf8_encoding": image(8, 8, MARK),
    }


def instruction_cases(rng):
    return {
        "huge": Instruction(text="open the drawer " * 6250, task="open_drawer", sequence=int(rng.integers(1, 1 << 62))),
        "empty": Instruction(text="", sequence=1),
        "whitespace": Instruction(text=" \t\n " * 50, sequence=2),
        "control_characters": Instruction(text="".join(chr(c) for c in range(32)) * 10, sequence=3),
        "emoji": Instruction(text="\U0001f916" * 3000, sequence=4),
        "invalid_utf8": Instruction(text=MARK, task=MARK, sequence=5),
        "far_future": Instruction(header=header("", FAR_FUTURE), text="push the button", sequence=(1 << 64) - 1),
    }


def latent_cases(rng, dim: int):
    def latent(values, stamp=None, instruction="open the drawer"):
        return GoalLatent(header=header("", stamp), latent=np.asarray(values, dtype=np.float32).tolist(),
                          instruction=instruction, sequence=int(rng.integers(1, 1 << 30)),
                          observation_stamp=stamp or Time(sec=0, nanosec=0), inference_time=float("nan"),
                          model_id=MARK)

    nan = rng.normal(size=dim)
    nan[::3] = np.nan
    return {
        "wrong_size": latent(rng.normal(size=3)),
        "huge": latent(np.zeros(1_000_000)),
        "empty": latent([]),
        "nan": latent(nan),
        "inf": latent(np.full(dim, np.inf)),
        "far_future": latent(rng.normal(size=dim), stamp=FAR_FUTURE),
        "invalid_utf8": latent(rng.normal(size=dim), instruction=MARK),
    }


def trajectory_cases(rng):
    def trajectory(n, frame="world", gripper=None, period=0.1, position=None, quaternion=(0.0, 0.0, 0.0, 1.0),
                   stamp=None):
        poses = []
        for _ in range(n):
            pose = Pose()
            x, y, z = position if position is not None else rng.normal(scale=0.1, size=3) + (0.0, 0.0, 0.5)
            pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = quaternion
            poses.append(pose)
        seconds = math.floor(period) if math.isfinite(period) else 0
        return EETrajectory(header=header(frame, stamp), poses=poses,
                            gripper=[1.0] * n if gripper is None else gripper,
                            waypoint_period=Duration(sec=int(seconds), nanosec=int((period - seconds) * 1e9)
                                                     if math.isfinite(period) else 0),
                            sequence=int(rng.integers(1, 1 << 30)), inference_time=float("inf"))

    return {
        "empty": trajectory(0),
        "nan_pose": trajectory(5, position=(float("nan"), 0.0, 0.5)),
        "gripper_length": trajectory(5, gripper=[1.0, -1.0]),
        "huge": trajectory(20_000),
        "zero_quaternion": trajectory(5, quaternion=(0.0, 0.0, 0.0, 0.0)),
        "wrong_frame": trajectory(5, frame="base_link"),
        "zero_period": trajectory(5, period=0.0),
        "far_away": trajectory(5, position=(1e9, -1e9, 1e9)),
        "far_future": trajectory(5, stamp=FAR_FUTURE),
        "invalid_utf8_frame": trajectory(3, frame=MARK),
    }


def joint_state_cases(rng):
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    return {
        "length_mismatch": JointState(name=names, position=[0.0] * 3),
        "too_many": JointState(name=[f"j{i}" for i in range(2000)], position=[0.0] * 2000),
        "nan": JointState(name=names, position=[float("nan")] * len(names)),
        "empty": JointState(),
        "invalid_utf8_name": JointState(name=[MARK], position=[0.0]),
    }


def pose_cases(rng):
    def pose(frame="world", position=(0.1, 0.0, 0.5), quaternion=(0.0, 0.0, 0.0, 1.0), stamp=None):
        message = PoseStamped(header=header(frame, stamp))
        message.pose.position.x, message.pose.position.y, message.pose.position.z = position
        (message.pose.orientation.x, message.pose.orientation.y, message.pose.orientation.z,
         message.pose.orientation.w) = quaternion
        return message

    return {
        "nan": pose(position=(float("nan"), 0.0, 0.0)),
        "zero_quaternion": pose(quaternion=(0.0, 0.0, 0.0, 0.0)),
        "wrong_frame": pose(frame="map"),
        "far_future": pose(stamp=FAR_FUTURE),
        "invalid_utf8_frame": pose(frame=MARK),
    }


def bool_cases(rng):
    return {"flip": Bool(data=bool(rng.integers(0, 2))), "invalid": Bool(data=True)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--topics", nargs="*", default=None, help="only these topics")
    parser.add_argument("--match-timeout", type=float, default=30.0)
    parser.add_argument("--pause", type=float, default=0.005, help="seconds between two messages")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    order = random.Random(args.seed)
    rclpy.init()
    node = rclpy.create_node("fuzzer")
    plan = {
        "points": (PointCloud2, RELIABLE, cloud_cases),
        "camera/static/points": (PointCloud2, RELIABLE, cloud_cases),
        "camera/static/image_raw": (Image, RELIABLE, image_cases),
        "instruction": (Instruction, RELIABLE, instruction_cases),
        "goal_latent": (GoalLatent, LATCHED, lambda r: latent_cases(r, args.latent_dim)),
        "ee_trajectory": (EETrajectory, RELIABLE, trajectory_cases),
        "joint_states": (JointState, RELIABLE, joint_state_cases),
        "ee_pose": (PoseStamped, RELIABLE, pose_cases),
        "teleop/gripper": (Bool, RELIABLE, bool_cases),
    }
    if args.topics:
        plan = {topic: plan[topic] for topic in args.topics}
    publishers = {topic: node.create_publisher(kind, topic, qos) for topic, (kind, qos, _) in plan.items()}
    deadline = time.monotonic() + args.match_timeout
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
        rclpy.spin_once(node, timeout_sec=0.05)
    unmatched = [topic for topic, p in publishers.items() if not p.get_subscription_count()]
    print(f"READY (no subscriber on: {', '.join(unmatched) or 'none'})", flush=True)
    sent = 0
    for _ in range(args.rounds):
        jobs = [(topic, name, message) for topic, (_, _, make) in plan.items() for name, message in make(rng).items()]
        order.shuffle(jobs)
        for topic, name, message in jobs:
            if name.startswith("invalid_utf8"):
                raw = serialize_message(message)
                assert MARK.encode() in raw, (topic, name)
                publishers[topic].publish(raw.replace(MARK.encode(), INVALID_UTF8))
            else:
                publishers[topic].publish(message)
            sent += 1
            print(f"SENT {topic} {name}", flush=True)
            rclpy.spin_once(node, timeout_sec=args.pause)
    # Reliable writers: give the readers time to take everything before this process goes.
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f"DONE {sent}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
