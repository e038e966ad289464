"""The bridge's outputs as ROS messages: a step's observation on every sensor topic, and SceneState."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2

from openhelix_msgs.msg import SceneState
from openhelix_ros.bridge.core import JOINT_NAMES, ROBOT_OBS_LABELS, SCENE_OBS_LABELS, StepObservation
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    camera_info_to_msg,
    depth_to_image,
    joint_state_to_msg,
    make_header,
    organized_points_to_pointcloud2,
    points_to_pointcloud2,
    pose_stamped_to_msg,
    rgb_to_image,
)
from openhelix_ros.common.node_utils import CLOCK_QOS, SCENE_STATE_QOS, SENSOR_PUBLISH_QOS

CAMERA_FRAMES = {"static": "static_camera_optical_frame", "gripper": "gripper_camera_optical_frame"}
CAMERA_TOPICS = {
    "static": (graph.STATIC_IMAGE, graph.STATIC_DEPTH, graph.STATIC_CAMERA_INFO, graph.STATIC_CAMERA_POSE),
    "gripper": (graph.GRIPPER_IMAGE, graph.GRIPPER_DEPTH, graph.GRIPPER_CAMERA_INFO, graph.GRIPPER_CAMERA_POSE),
}
CAMERA_POINTS_TOPICS = {"static": graph.STATIC_POINTS, "gripper": graph.GRIPPER_POINTS}


class ObservationPublisher:
    """The bridge's publishers of one step's observation (``with_clock``: lockstep publishes /clock)."""

    def __init__(self, node: Node, with_clock: bool) -> None:
        self._clock_pub = node.create_publisher(Clock, graph.CLOCK, CLOCK_QOS) if with_clock else None
        self._camera_pubs = {
            name: (node.create_publisher(Image, image, SENSOR_PUBLISH_QOS),
                   node.create_publisher(Image, depth, SENSOR_PUBLISH_QOS),
                   node.create_publisher(CameraInfo, info, SENSOR_PUBLISH_QOS),
                   node.create_publisher(PoseStamped, pose, SENSOR_PUBLISH_QOS))
            for name, (image, depth, info, pose) in CAMERA_TOPICS.items()}
        self._points_pub = node.create_publisher(PointCloud2, graph.POINTS, SENSOR_PUBLISH_QOS)
        self._camera_points_pubs = {name: node.create_publisher(PointCloud2, topic, SENSOR_PUBLISH_QOS)
                                    for name, topic in CAMERA_POINTS_TOPICS.items()}
        self._joint_pub = node.create_publisher(JointState, graph.JOINT_STATES, SENSOR_PUBLISH_QOS)
        self._pose_pub = node.create_publisher(PoseStamped, graph.EE_POSE, SENSOR_PUBLISH_QOS)
        self._scene_pub = node.create_publisher(SceneState, graph.SCENE_STATE, SCENE_STATE_QOS)

    def publish(self, observation: StepObservation, with_points: bool) -> None:
        """One step's observation on every topic: /clock first (sim-time nodes see the new time before
        the data), scene_state last (it marks the observation complete)."""
        stamp = make_header(stamp=observation.stamp_ns).stamp
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))
        if observation.rendered:
            for name, (image_pub, depth_pub, info_pub, pose_pub) in self._camera_pubs.items():
                frame = CAMERA_FRAMES[name]
                camera = observation.cameras.get(name)
                image_pub.publish(rgb_to_image(observation.rgb[name], frame, stamp))
                depth_pub.publish(depth_to_image(observation.depth[name], frame, stamp))
                if camera is not None:
                    info_pub.publish(camera_info_to_msg(camera["intrinsics"], camera["width"], camera["height"],
                                                        frame, stamp))
                    if camera.get("extrinsics") is not None:
                        pose_pub.publish(camera_pose_msg(camera["extrinsics"], stamp))
            if with_points and observation.cameras:
                xyz, rgb = observation.points()
                self._points_pub.publish(points_to_pointcloud2(xyz, rgb, graph.WORLD_FRAME, stamp))
                # ~0.8 MB a step for both cameras: built only while a camera policy (or a recorder) listens
                for name, publisher in self._camera_points_pubs.items():
                    if publisher.get_subscription_count() > 0 and name in observation.cameras:
                        xyz, rgb = observation.camera_points(name)
                        publisher.publish(organized_points_to_pointcloud2(xyz, rgb, graph.WORLD_FRAME, stamp))
        self._joint_pub.publish(joint_state_to_msg(JOINT_NAMES, observation.joint_positions, stamp=stamp))
        self._pose_pub.publish(pose_stamped_to_msg(observation.tcp_position, observation.tcp_quaternion,
                                                   graph.WORLD_FRAME, stamp))
        self._scene_pub.publish(scene_state_msg(observation))


def camera_pose_msg(camera_to_world, stamp) -> PoseStamped:
    """A camera's optical frame (4x4 camera-to-world) as a PoseStamped in world."""
    matrix = np.asarray(camera_to_world, dtype=np.float64)
    return pose_stamped_to_msg(matrix[:3, 3], Rotation.from_matrix(matrix[:3, :3]).as_quat(), graph.WORLD_FRAME, stamp)


def scene_state_msg(observation: StepObservation) -> SceneState:
    """SceneState of one step: CALVIN's robot_obs and scene_obs with their labels, the step number."""
    state = SceneState()
    state.header = make_header(graph.WORLD_FRAME, observation.stamp_ns)
    state.robot_obs = observation.robot_obs.tolist()
    state.scene_obs = observation.scene_obs.tolist()
    state.robot_obs_labels = list(ROBOT_OBS_LABELS)
    state.scene_obs_labels = list(SCENE_OBS_LABELS)
    state.step = int(observation.step)
    state.plans = int(observation.plans)
    return state

