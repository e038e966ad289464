"""What System 1 sees: one dataclass for both the simulator's point cloud and per-camera RGB-D.

Camera convention: OpenCV (x right, y down, z forward out of the lens); `extrinsics` maps camera
coordinates to world coordinates (camera-to-world, 4x4). A PyBullet/OpenGL camera (y up, z backward)
must be converted by the caller: T_cv = T_gl @ diag(1, -1, -1, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ObservationError(ValueError):
    """An observation with the wrong shape, type or non-finite values."""


@dataclass
class CameraView:
    """One RGB-D camera: rgb (H, W, 3) uint8, depth (H, W) float metres (<= 0 or NaN where unknown),
    intrinsics K (3, 3), extrinsics camera-to-world (4, 4)."""

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    name: str = "camera"

    def validate(self) -> None:
        rgb, depth = np.asarray(self.rgb), np.asarray(self.depth)
        where = f"camera '{self.name}'"
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ObservationError(f"{where}: rgb must be (H, W, 3), got {rgb.shape}")
        if depth.shape != rgb.shape[:2]:
            raise ObservationError(f"{where}: depth must be {rgb.shape[:2]} like rgb, got {depth.shape}")
        if np.asarray(self.intrinsics).shape != (3, 3):
            raise ObservationError(f"{where}: intrinsics must be 3x3, got {np.asarray(self.intrinsics).shape}")
        ext = np.asarray(self.extrinsics)
        if ext.shape != (4, 4):
            raise ObservationError(f"{where}: extrinsics must be 4x4 camera-to-world, got {ext.shape}")
        if not (np.all(np.isfinite(ext)) and np.all(np.isfinite(self.intrinsics))):
            raise ObservationError(f"{where}: camera parameters contain NaN or inf")
        if rgb.dtype != np.uint8 and not np.all(np.isfinite(rgb)):
            raise ObservationError(f"{where}: rgb contains NaN or inf")

    def world_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pixel lifted to the world frame: xyz (H*W, 3), rgb (H*W, 3) in [0, 1], valid mask."""
        depth = np.asarray(self.depth, dtype=np.float64)
        h, w = depth.shape
        k = np.asarray(self.intrinsics, dtype=np.float64)
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        x = (u - k[0, 2]) / k[0, 0] * depth
        y = (v - k[1, 2]) / k[1, 1] * depth
        cam = np.stack([x, y, depth, np.ones_like(depth)], axis=-1).reshape(-1, 4)
        world = cam @ np.asarray(self.extrinsics, dtype=np.float64).T
        valid = np.isfinite(depth.reshape(-1)) & (depth.reshape(-1) > 0)
        return world[:, :3], rgb_to_unit(self.rgb).reshape(-1, 3), valid


def rgb_to_unit(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    return rgb.astype(np.float32)


@dataclass
class Observation:
    """Either `cameras` (one CameraView per camera, in the order the model was configured with) or a
    world-frame point cloud `points` (N, 3) with `colors` (N, 3) (uint8 or floats in [0, 1]); `images`
    (one (H, W, 3) uint8 RGB per camera, that order too) is what a 2D image policy reads, and may come with
    either or alone."""

    cameras: list[CameraView] | None = None
    points: np.ndarray | None = None
    colors: np.ndarray | None = None
    images: list[np.ndarray] | None = None
    extras: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.cameras is None and self.points is None and self.images is None:
            raise ObservationError("observation has neither cameras, points nor images")
        for i, image in enumerate(self.images or []):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ObservationError(f"image {i} must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if self.cameras is not None:
            if len(self.cameras) == 0:
                raise ObservationError("observation has an empty camera list")
            for cam in self.cameras:
                cam.validate()
        if self.points is not None:
            pts = np.asarray(self.points)
            if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
                raise ObservationError(f"points must be (N, 3) with N > 0, got {pts.shape}")
            if self.colors is None or np.asarray(self.colors).shape != pts.shape:
                shape = None if self.colors is None else np.asarray(self.colors).shape
                raise ObservationError(f"colors must be (N, 3) like points {pts.shape}, got {shape}")
            if not np.all(np.isfinite(pts)):
                raise ObservationError("points contain NaN or inf")

    def point_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """World-frame xyz (N, 3) float32 and rgb (N, 3) in [0, 1], invalid depth dropped."""
        if self.points is not None:
            return np.asarray(self.points, np.float32), rgb_to_unit(self.colors)
        if self.cameras is None:
            raise ObservationError("observation has images only: no point cloud (it is for an image policy)")
        xyz, rgb = [], []
        for cam in self.cameras:
            p, c, valid = cam.world_points()
            xyz.append(p[valid])
            rgb.append(c[valid])
        xyz, rgb = np.concatenate(xyz).astype(np.float32), np.concatenate(rgb)
        if len(xyz) == 0:
            raise ObservationError("no camera pixel has a valid depth")
        return xyz, rgb
