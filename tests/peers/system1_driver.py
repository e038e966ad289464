"""Peer process that plays bridge and System 2 for the system1 node test.

Publishes points, ee_pose, joint_states and goal latents, records every ee_trajectory and MarkerArray it
receives (with the phase of the scenario it arrived in) and writes them to --out as JSON.

--mode realtime: a 15 Hz sensor stream (stamps = wall clock) and 5 Hz latents. Phases: normal; bad
    (clouds without xyz / without rgb / all NaN, a 512-value latent, a NaN latent, a pose in another
    frame, among the good stream); stale (latents stop); resumed (latents again).
--mode lockstep: steps 0..6 in sim time, one observation per step, waiting for the trajectory stamped
    with it like the bridge does; latents of the even steps (Asy(2)), the one of step 2 held back until
    a second after the observation of step 4, so System 1 has to wait for it.
"""

import argparse
import array
import json
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import JointState, PointCloud2, PointField
from visualization_msgs.msg import MarkerArray

from openhelix_msgs.msg import EETrajectory, GoalLatent
from openhelix_ros.common.conversions import (
    duration_to_seconds,
    joint_state_to_msg,
    make_header,
    ns_to_stamp,
    points_to_pointcloud2,
    pose_stamped_to_msg,
    stamp_to_ns,
)

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATENT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
STEP_NS = 1_000_000_000 / 30
POSITION = np.array([0.05, -0.1, 0.35])
QUATERNION = Rotation.from_euler("xyz", [np.pi, 0, np.pi / 2]).as_quat()
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("realtime", "lockstep"), required=True)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--stale-seconds", type=float, default=2.5)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("system1_driver")
    points_pub = node.create_publisher(PointCloud2, "points", RELIABLE)
    pose_pub = node.create_publisher(PoseStamped, "ee_pose", RELIABLE)
    joints_pub = node.create_publisher(JointState, "joint_states", RELIABLE)
    latent_pub = node.create_publisher(GoalLatent, "goal_latent", LATENT)
    clock_pub = node.create_publisher(Clock, "/clock", RELIABLE)
    phase = {"name": "startup"}
    trajectories, markers, latents, clouds = [], [], [], []
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.3, 0.3], (1500, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (1500, 3), dtype=np.uint8)

    def on_trajectory(message: EETrajectory):
        trajectories.append({
            "phase": phase["name"], "arrival": time.monotonic(), "stamp": stamp_to_ns(message.header.stamp),
            "frame": message.header.frame_id, "sequence": int(message.sequence),
            "latent_sequence": int(message.latent_sequence), "latent_stamp": stamp_to_ns(message.latent_stamp),
            "positions": [[p.position.x, p.position.y, p.position.z] for p in message.poses],
            "quaternions": [[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]
                            for p in message.poses],
            "gripper": list(message.gripper), "period": duration_to_seconds(message.waypoint_period),
            "inference_time": float(message.inference_time)})

    def on_markers(message: MarkerArray):
        markers.append({"phase": phase["name"], "markers": [
            {"type": m.type, "frame": m.header.frame_id, "stamp": stamp_to_ns(m.header.stamp), "points": len(m.points)}
            for m in message.markers]})

    node.create_subscription(EETrajectory, "ee_trajectory", on_trajectory, RELIABLE)
    node.create_subscription(MarkerArray, "visualization/trajectory", on_markers, RELIABLE)

    def spin_until(predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(node, timeout_sec=0.01)
        return predicate()

    def publish_observation(stamp: int, cloud_xyz=xyz, cloud_rgb=rgb):
        pose_pub.publish(pose_stamped_to_msg(POSITION, QUATERNION, "world", stamp))
        joints_pub.publish(joint_state_to_msg(JOINTS, [0.0] * 7 + [0.04, 0.04], stamp=stamp))
        points_pub.publish(points_to_pointcloud2(cloud_xyz, cloud_rgb, "world", stamp))
        clouds.append(stamp)

    def publish_latent(observation_stamp: int, values=None, sequence=None):
        sequence = sequence if sequence is not None else len(latents) + 1
        message = GoalLatent(header=make_header("", node.get_clock().now().nanoseconds if args.mode == "realtime"
                                                else observation_stamp + 1_000_000),
                             instruction="open the drawer", sequence=sequence,
                             observation_stamp=ns_to_stamp(observation_stamp), inference_time=0.01, model_id="driver")
        message.latent = (values if values is not None else
                          np.sin(np.arange(args.latent_dim) + sequence).astype(np.float32)).tolist()
        latent_pub.publish(message)
        if values is None:
            latents.append({"sequence": sequence, "stamp": stamp_to_ns(message.header.stamp),
                            "observation_stamp": observation_stamp})

    if not spin_until(lambda: points_pub.get_subscription_count() > 0 and latent_pub.get_subscription_count() > 0
                      and pose_pub.get_subscription_count() > 0 and node.count_publishers("ee_trajectory") > 0, 60):
        print("system1 never matched", flush=True)
        return 1
    spin_until(lambda: False, 0.3)

    result = {}
    if args.mode == "realtime":
        latents_on = {"on": True}

        def sensor_tick():
            publish_observation(node.get_clock().now().nanoseconds)

        def latent_tick():
            if latents_on["on"]:
                publish_latent(node.get_clock().now().nanoseconds)

        node.create_timer(1 / 15, sensor_tick)
        node.create_timer(0.2, latent_tick)
        phase["name"] = "normal"
        spin_until(lambda: len(trajectories) >= 3, 60)

        phase["name"] = "bad"
        now = node.get_clock().now().nanoseconds
        no_x = points_to_pointcloud2(xyz, rgb, "world", now)
        no_x.fields = [f for f in no_x.fields if f.name != "x"] + [PointField(name="intensity", offset=0,
                                                                            datatype=PointField.FLOAT32, count=1)]
        points_pub.publish(no_x)
        spin_until(lambda: False, 0.1)
        points_pub.publish(points_to_pointcloud2(xyz, None, "world", now))  # no colour
        spin_until(lambda: False, 0.1)
        all_nan = points_to_pointcloud2(np.zeros((10, 3), np.float32), rgb[:10], "world", now)
        raw = np.frombuffer(bytes(all_nan.data), np.uint8).copy().view("<f4").reshape(10, 4)
        raw[:, :3] = np.nan
        all_nan.data = array.array("B", raw.tobytes())
        points_pub.publish(all_nan)
        spin_until(lambda: False, 0.1)
        pose_pub.publish(pose_stamped_to_msg(POSITION, QUATERNION, "camera", now))
        # The good latents pause (so the bad ones are the newest for a moment) for well under the node's
        # max_latent_age, so the age gate does not trip here.
        latents_on["on"] = False
        spin_until(lambda: False, 0.1)
        publish_latent(now, values=np.ones(512, np.float32), sequence=9999)
        spin_until(lambda: False, 0.15)
        publish_latent(now, values=np.full(args.latent_dim, np.nan, np.float32), sequence=9998)
        spin_until(lambda: False, 0.15)
        latents_on["on"] = True
        phase["name"] = "after_bad"
        count = len(trajectories)
        spin_until(lambda: len(trajectories) >= count + 3, 30)

        phase["name"] = "stale"
        latents_on["on"] = False
        result["stale_start"] = time.monotonic()
        spin_until(lambda: False, args.stale_seconds)

        phase["name"] = "resumed"
        result["resume_start"] = time.monotonic()
        latents_on["on"] = True
        count = len(trajectories)
        spin_until(lambda: len(trajectories) >= count + 3, 30)
    else:
        held_back = None
        for step in range(7):
            stamp = int(round(step * STEP_NS))
            phase["name"] = f"step{step}"
            clock_pub.publish(Clock(clock=ns_to_stamp(stamp)))
            publish_observation(stamp)
            result.setdefault("observation_time", {})[step] = time.monotonic()
            if step % 2 == 0:
                if step == 2:
                    held_back = stamp  # System 1 needs it at step 4, not before
                else:
                    if step == 4:
                        spin_until(lambda: False, 1.0)
                        publish_latent(held_back)
                        spin_until(lambda: False, 0.2)
                    publish_latent(stamp)
            if not spin_until(lambda s=stamp: any(t["stamp"] == s for t in trajectories), 30):
                print(f"no trajectory for step {step}", flush=True)
                break
        spin_until(lambda: False, 0.5)

    result.update({"trajectories": trajectories, "markers": markers, "latents": latents, "clouds": clouds})
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
