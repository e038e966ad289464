"""The two cameras (static and gripper-mounted), their intrinsics/extrinsics, rendering, and the
fusion of both depth images into one coloured world-frame point cloud.

Conventions: intrinsics are a pinhole ``K`` (fx, fy, cx, cy in pixels); extrinsics are the 4x4
camera-to-world transform in the OpenCV optical frame (x right, y down, z forward), so a pixel (u, v)
with depth d (metres along the optical axis, as CALVIN's depth images) maps to
``T_world_cam @ [(u - cx) d / fx, (v - cy) d / fy, d, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pybullet as pb


@dataclass(frozen=True)
class CameraSpec:
    """What a camera is: image size, field of view and clipping planes."""

    name: str
    width: int
    height: int
    fov_deg: float  # vertical field of view
    near: float
    far: float

    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix for this camera (square pixels, principal point at the centre)."""
        focal = self.height / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))
        return np.array([[focal, 0.0, self.width / 2.0], [0.0, focal, self.height / 2.0], [0.0, 0.0, 1.0]])

    def projection_matrix(self) -> list[float]:
        return pb.computeProjectionMatrixFOV(self.fov_deg, self.width / self.height, self.near, self.far)


STATIC_CAMERA = CameraSpec("static", 200, 200, fov_deg=52.0, near=0.05, far=3.0)
GRIPPER_CAMERA = CameraSpec("gripper", 84, 84, fov_deg=75.0, near=0.01, far=2.0)

# The static camera looks at the desk from the robot's side, above and to the right of its base, so
# that the arm hides as little of the desk as possible.
STATIC_EYE = np.array([0.62, -0.78, 0.78])
STATIC_TARGET = np.array([-0.02, 0.0, -0.04])
STATIC_UP = np.array([0.0, 0.0, 1.0])
# The gripper camera sits on the hand, behind and above the fingers, looking along the approach axis.
GRIPPER_CAMERA_OFFSET = np.array([0.0, -0.05, 0.02])  # in the panda_hand frame
GRIPPER_CAMERA_LOOK = np.array([0.0, 0.0, 0.15])  # point it looks at, panda_hand frame (z = approach)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world transform (OpenCV optical frame) of a camera at ``eye`` looking at ``target``."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along ``up``: any perpendicular will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    transform = np.eye(4)
    transform[:3, 0], transform[:3, 1], transform[:3, 2], transform[:3, 3] = right, down, forward, eye
    return transform


def view_matrix(camera_to_world: np.ndarray) -> list[float]:
    """PyBullet's (OpenGL, column-major) view matrix for an OpenCV camera-to-world transform."""
    eye = camera_to_world[:3, 3]
    forward = camera_to_world[:3, 2]
    up = -camera_to_world[:3, 1]
    return pb.computeViewMatrix(eye.tolist(), (eye + forward).tolist(), up.tolist())


def static_camera_pose() -> np.ndarray:
    return look_at(STATIC_EYE, STATIC_TARGET, STATIC_UP)


def gripper_camera_pose(hand_position, hand_quaternion_xyzw) -> np.ndarray:
    """Camera-to-world transform of the gripper camera for a given ``panda_hand`` pose."""
    rotation = np.array(pb.getMatrixFromQuaternion(hand_quaternion_xyzw)).reshape(3, 3)
    eye = np.asarray(hand_position) + rotation @ GRIPPER_CAMERA_OFFSET
    target = np.asarray(hand_position) + rotation @ GRIPPER_CAMERA_LOOK
    # "Up" in the image is the hand's -y axis so that the fingers appear at the bottom of the image.
    return look_at(eye, target, rotation @ np.array([0.0, -1.0, 0.0]))


def depth_from_buffer(buffer: np.ndarray, spec: CameraSpec) -> np.ndarray:
    """OpenGL z-buffer values in [0, 1] to metric depth along the optical axis (float32, metres)."""
    buffer = np.asarray(buffer, dtype=np.float64)
    depth = spec.far * spec.near / (spec.far - (spec.far - spec.near) * buffer)
    return depth.astype(np.float32)


def render(client: int, spec: CameraSpec, camera_to_world: np.ndarray, renderer: int) -> tuple:
    """Render one camera: (rgb uint8 HxWx3, depth float32 HxW metres)."""
    _, _, rgba, buffer, _ = pb.getCameraImage(
        spec.width, spec.height, viewMatrix=view_matrix(camera_to_world),
        projectionMatrix=spec.projection_matrix(), renderer=renderer, shadow=0,
        flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=client)
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(spec.height, spec.width, 4)[:, :, :3].copy()
    depth = depth_from_buffer(np.asarray(buffer).reshape(spec.height, spec.width), spec)
    return rgb, depth


def depth_to_points(depth: np.ndarray, intrinsics: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """Back-project every pixel of a depth image to world coordinates: (H*W, 3) float32."""
    height, width = depth.shape
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    # Pixel centres, hence the + 0.5: PyBullet's projection samples there.
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    z = depth.astype(np.float64)
    camera_points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1).reshape(-1, 3)
    world = camera_points @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
    return world.astype(np.float32)


def fuse_point_cloud(obs: dict, cameras: dict, max_depth: float = 2.0,
                     workspace: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One coloured world-frame point cloud from both cameras of an observation.

    ``cameras`` maps "static"/"gripper" to ``{"intrinsics": K, "extrinsics": T_world_cam}`` (what
    ``env.camera_info()`` returns). Pixels at or beyond ``max_depth`` (background) are dropped, and so
    are points outside ``workspace`` = ((xmin, ymin, zmin), (xmax, ymax, zmax)) when it is given.
    Returns (xyz float32 (N, 3) metres, rgb uint8 (N, 3)).
    """
    xyz_parts, rgb_parts = [], []
    for name in ("static", "gripper"):
        depth = np.asarray(obs["depth_obs"][f"depth_{name}"])
        rgb = np.asarray(obs["rgb_obs"][f"rgb_{name}"])
        info = cameras[name]
        points = depth_to_points(depth, np.asarray(info["intrinsics"]), np.asarray(info["extrinsics"]))
        keep = (depth.reshape(-1) < max_depth) & np.isfinite(points).all(axis=1)
        xyz_parts.append(points[keep])
        rgb_parts.append(rgb.reshape(-1, 3)[keep])
    xyz = np.concatenate(xyz_parts).astype(np.float32)
    rgb = np.concatenate(rgb_parts).astype(np.uint8)
    if workspace is not None:
        low, high = np.asarray(workspace[0]), np.asarray(workspace[1])
        inside = np.all((xyz >= low) & (xyz <= high), axis=1)
        xyz, rgb = xyz[inside], rgb[inside]
    return xyz, rgb
