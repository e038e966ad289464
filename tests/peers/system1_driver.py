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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("realtime", "lockstep"), required=True)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--stale-seconds", type=float, default=2.5)
    return parser.parse_args()


class System1Driver:
    """The system1 node's world: its inputs published, its outputs recorded with the current phase."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.node = rclpy.create_node("system1_driver")
        self.points_pub = self.node.create_publisher(PointCloud2, "points", RELIABLE)
        self.pose_pub = self.node.create_publisher(PoseStamped, "ee_pose", RELIABLE)
        self.joints_pub = self.node.create_publisher(JointState, "joint_states", RELIABLE)
        self.latent_pub = self.node.create_publisher(GoalLatent, "goal_latent", LATENT)
        self.clock_pub = self.node.create_publisher(Clock, "/clock", RELIABLE)
        self.phase = "startup"
        self.latents_on = True  # realtime: whether the latent timer publishes
        self.trajectories, self.markers, self.latents, self.clouds = [], [], [], []
        rng = np.random.default_rng(0)
        self.xyz = rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.3, 0.3], (1500, 3)).astype(np.float32)
        self.rgb = rng.integers(0, 256, (1500, 3), dtype=np.uint8)
        self.node.create_subscription(EETrajectory, "ee_trajectory", self.on_trajectory, RELIABLE)
        self.node.create_subscription(MarkerArray, "visualization/trajectory", self.on_markers, RELIABLE)

    def now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # ------------------------------------------------------------------------------------- recording
    def on_trajectory(self, message: EETrajectory) -> None:
        self.trajectories.append({
            "phase": self.phase, "arrival": time.monotonic(), "stamp": stamp_to_ns(message.header.stamp),
            "frame": message.header.frame_id, "sequence": int(message.sequence),
            "latent_sequence": int(message.latent_sequence), "latent_stamp": stamp_to_ns(message.latent_stamp),
            "positions": [[p.position.x, p.position.y, p.position.z] for p in message.poses],
            "quaternions": [[p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]
                            for p in message.poses],
            "gripper": list(message.gripper), "period": duration_to_seconds(message.waypoint_period),
            "inference_time": float(message.inference_time)})

    def on_markers(self, message: MarkerArray) -> None:
        self.markers.append({"phase": self.phase, "markers": [
            {"type": m.type, "frame": m.header.frame_id, "stamp": stamp_to_ns(m.header.stamp), "points": len(m.points)}
            for m in message.markers]})

    def recorded(self) -> dict:
        return {"trajectories": self.trajectories, "markers": self.markers, "latents": self.latents,
                "clouds": self.clouds}

    # -------------------------------------------------------------------------------------- spinning
    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.01)
        return predicate()

    def pause(self, seconds: float) -> None:
        """Spin (callbacks keep recording) for ``seconds``."""
        self.spin_until(lambda: False, seconds)

    def wait_for_system1(self) -> bool:
        """True once system1 subscribes to points, goal_latent and ee_pose and publishes ee_trajectory."""
        return self.spin_until(lambda: self.points_pub.get_subscription_count() > 0
                               and self.latent_pub.get_subscription_count() > 0
                               and self.pose_pub.get_subscription_count() > 0
                               and self.node.count_publishers("ee_trajectory") > 0, 60)

    def wait_for_more_trajectories(self, more: int, timeout: float) -> None:
        count = len(self.trajectories)
        self.spin_until(lambda: len(self.trajectories) >= count + more, timeout)

    # ------------------------------------------------------------------------------------ publishing
    def publish_observation(self, stamp: int) -> None:
        self.pose_pub.publish(pose_stamped_to_msg(POSITION, QUATERNION, "world", stamp))
        self.joints_pub.publish(joint_state_to_msg(JOINTS, [0.0] * 7 + [0.04, 0.04], stamp=stamp))
        self.points_pub.publish(points_to_pointcloud2(self.xyz, self.rgb, "world", stamp))
        self.clouds.append(stamp)

    def publish_latent(self, observation_stamp: int, values=None, sequence=None) -> None:
        """A goal latent for the observation at ``observation_stamp``: a good one (recorded in
        ``latents``) unless ``values`` are given."""
        sequence = sequence if sequence is not None else len(self.latents) + 1
        stamp = self.now() if self.args.mode == "realtime" else observation_stamp + 1_000_000
        message = GoalLatent(header=make_header("", stamp), instruction="open the drawer", sequence=sequence,
                             observation_stamp=ns_to_stamp(observation_stamp), inference_time=0.01, model_id="driver")
        message.latent = (values if values is not None else
                          np.sin(np.arange(self.args.latent_dim) + sequence).astype(np.float32)).tolist()
        self.latent_pub.publish(message)
        if values is None:
            self.latents.append({"sequence": sequence, "stamp": stamp_to_ns(message.header.stamp),
                                 "observation_stamp": observation_stamp})

    def publish_bad_clouds(self, now: int) -> None:
        """A cloud without x, one without colour and one of NaN points only."""
        no_x = points_to_pointcloud2(self.xyz, self.rgb, "world", now)
        no_x.fields = [f for f in no_x.fields if f.name != "x"] + [PointField(name="intensity", offset=0,
                                                                            datatype=PointField.FLOAT32, count=1)]
        self.points_pub.publish(no_x)
        self.pause(0.1)
        self.points_pub.publish(points_to_pointcloud2(self.xyz, None, "world", now))  # no colour
        self.pause(0.1)
        all_nan = points_to_pointcloud2(np.zeros((10, 3), np.float32), self.rgb[:10], "world", now)
        raw = np.frombuffer(bytes(all_nan.data), np.uint8).copy().view("<f4").reshape(10, 4)
        raw[:, :3] = np.nan
        all_nan.data = array.array("B", raw.tobytes())
        self.points_pub.publish(all_nan)
        self.pause(0.1)

    def publish_bad_latents(self, now: int) -> None:
        """A 512-value latent (sequence 9999) and a NaN one (9998), the good latents paused meanwhile."""
        # The good latents pause (so the bad ones are the newest for a moment) for well under the node's
        # max_latent_age, so the age gate does not trip here.
        self.latents_on = False
        self.pause(0.1)
        self.publish_latent(now, values=np.ones(512, np.float32), sequence=9999)
        self.pause(0.15)
        self.publish_latent(now, values=np.full(self.args.latent_dim, np.nan, np.float32), sequence=9998)
        self.pause(0.15)
        self.latents_on = True

    def sensor_tick(self) -> None:
        self.publish_observation(self.now())

    def latent_tick(self) -> None:
        if self.latents_on:
            self.publish_latent(self.now())

    # ------------------------------------------------------------------------------------- scenarios
    def run_realtime(self, result: dict) -> None:
        """15 Hz sensors and 5 Hz latents; phases normal, bad, after_bad, stale (no latents), resumed."""
        self.node.create_timer(1 / 15, self.sensor_tick)
        self.node.create_timer(0.2, self.latent_tick)
        self.phase = "normal"
        self.spin_until(lambda: len(self.trajectories) >= 3, 60)

        self.phase = "bad"
        now = self.now()
        self.publish_bad_clouds(now)
        self.pose_pub.publish(pose_stamped_to_msg(POSITION, QUATERNION, "camera", now))
        self.publish_bad_latents(now)
        self.phase = "after_bad"
        self.wait_for_more_trajectories(3, 30)

        self.phase = "stale"
        self.latents_on = False
        result["stale_start"] = time.monotonic()
        self.pause(self.args.stale_seconds)

        self.phase = "resumed"
        result["resume_start"] = time.monotonic()
        self.latents_on = True
        self.wait_for_more_trajectories(3, 30)

    def run_lockstep(self, result: dict) -> None:
        """Steps 0..6 in sim time, each waiting for its trajectory; latents of the even steps, step 2's
        held back until a second after the observation of step 4."""
        held_back = None
        for step in range(7):
            stamp = int(round(step * STEP_NS))
            self.phase = f"step{step}"
            self.clock_pub.publish(Clock(clock=ns_to_stamp(stamp)))
            self.publish_observation(stamp)
            result.setdefault("observation_time", {})[step] = time.monotonic()
            held_back = self.publish_latents_of_step(step, stamp, held_back)
            if not self.spin_until(lambda s=stamp: any(t["stamp"] == s for t in self.trajectories), 30):
                print(f"no trajectory for step {step}", flush=True)
                break
        self.pause(0.5)

    def publish_latents_of_step(self, step: int, stamp: int, held_back: int | None) -> int | None:
        """Asy(2): the latent of each even step, but step 2's only at step 4 (after a second); returns the
        stamp held back."""
        if step % 2:
            return held_back
        if step == 2:
            return stamp  # System 1 needs it at step 4, not before
        if step == 4:
            self.pause(1.0)
            self.publish_latent(held_back)
            self.pause(0.2)
        self.publish_latent(stamp)
        return held_back


def main() -> int:
    args = parse_args()
    rclpy.init()
    driver = System1Driver(args)
    if not driver.wait_for_system1():
        print("system1 never matched", flush=True)
        return 1
    driver.pause(0.3)
    result = {}
    if args.mode == "realtime":
        driver.run_realtime(result)
    else:
        driver.run_lockstep(result)
    result.update(driver.recorded())
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    driver.node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
