"""The evaluator's camera, for its episode videos: the static camera's images, intrinsics and pose, and
the latents and plans the evaluator hears anyway, handed to the chain being filmed
(evaluation/video.py: ChainFilm), if any. Callbacks only convert and hand over; drawing and encoding
run in the film's own thread.
"""

from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image

from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    camera_info_from_msg,
    image_to_array,
    pose_stamped_from_msg,
    stamp_to_ns,
    trajectory_from_msg,
)
from openhelix_ros.common.node_utils import SENSOR_QOS
from openhelix_ros.evaluation.video import ChainFilm, Projection


class Filming:
    """Subscribes ``node`` to the static camera; ``film`` is the chain being filmed (set and cleared by
    the goal, under ``lock``)."""

    def __init__(self, node: Node, lock: threading.Lock, callback_group) -> None:
        self.lock = lock
        self.film: ChainFilm | None = None
        self._intrinsics: np.ndarray | None = None
        # Best effort, latest few: a late frame is a lost frame of a video, never a delay of the graph.
        node.create_subscription(Image, graph.STATIC_IMAGE, self._on_image, SENSOR_QOS, callback_group=callback_group)
        node.create_subscription(CameraInfo, graph.STATIC_CAMERA_INFO, self._on_camera_info, SENSOR_QOS,
                                 callback_group=callback_group)
        node.create_subscription(PoseStamped, graph.STATIC_CAMERA_POSE, self._on_camera_pose, SENSOR_QOS,
                                 callback_group=callback_group)

    def on_latent(self, observation_stamp_ns: int) -> None:
        """Call with ``lock`` held."""
        if self.film is not None:
            self.film.on_latent(observation_stamp_ns)

    def on_trajectory(self, message) -> None:
        if self.film is None:
            return
        try:
            plan = trajectory_from_msg(message)
        except ValueError:
            return  # the bridge refuses it too, and says why; the video just shows no plan
        with self.lock:
            if self.film is not None:
                self.film.on_plan(stamp_to_ns(message.header.stamp), plan.positions, plan.gripper)

    def _on_image(self, message: Image) -> None:
        if self.film is None:
            return
        try:
            rgb = image_to_array(message)
        except ValueError:
            return  # not a picture this node can film; the nodes that use it report why
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            return
        with self.lock:
            if self.film is not None:
                self.film.on_image(rgb[..., :3], stamp_to_ns(message.header.stamp))

    def _on_camera_info(self, message: CameraInfo) -> None:
        try:
            self._intrinsics = camera_info_from_msg(message)[0]
        except ValueError:
            pass

    def _on_camera_pose(self, message: PoseStamped) -> None:
        if self.film is None or self._intrinsics is None:
            return
        position, quaternion, _, _ = pose_stamped_from_msg(message)
        camera_to_world = np.eye(4)
        camera_to_world[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
        camera_to_world[:3, 3] = position
        with self.lock:
            if self.film is not None:
                self.film.on_camera(Projection(self._intrinsics, camera_to_world))
