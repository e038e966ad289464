"""Rotation and pose helpers shared by the models and the data readers.

Conventions: rotation matrices act on column vectors; CALVIN stores the tool orientation as XYZ Euler
angles (extrinsic x, then y, then z: R = Rz @ Ry @ Rx); the 6D rotation is the first two columns of
the matrix, concatenated (Zhou et al. 2019), as 3D Diffuser Actor uses it.
"""

from __future__ import annotations

import numpy as np
import torch


def euler_xyz_to_matrix(euler: np.ndarray) -> np.ndarray:
    """XYZ Euler angles (..., 3) in radians -> rotation matrices (..., 3, 3)."""
    euler = np.asarray(euler, dtype=np.float64)
    x, y, z = euler[..., 0], euler[..., 1], euler[..., 2]
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    m = np.empty(euler.shape[:-1] + (3, 3))
    m[..., 0, 0] = cy * cz
    m[..., 0, 1] = sx * sy * cz - cx * sz
    m[..., 0, 2] = cx * sy * cz + sx * sz
    m[..., 1, 0] = cy * sz
    m[..., 1, 1] = sx * sy * sz + cx * cz
    m[..., 1, 2] = cx * sy * sz - sx * cz
    m[..., 2, 0] = -sy
    m[..., 2, 1] = sx * cy
    m[..., 2, 2] = cx * cy
    return m


def matrix_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """Inverse of euler_xyz_to_matrix (away from gimbal lock)."""
    m = np.asarray(m, dtype=np.float64)
    y = np.arcsin(np.clip(-m[..., 2, 0], -1.0, 1.0))
    x = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    z = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([x, y, z], axis=-1)


def matrix_to_rot6d(m):
    """Rotation matrices (..., 3, 3) -> 6D (..., 6): first column then second column."""
    if isinstance(m, torch.Tensor):
        return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)
    m = np.asarray(m)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


# Below this length a Gram-Schmidt remainder has no usable direction (float32 rounding dominates it).
_DEGENERATE_NORM = 1e-6


def rot6d_to_matrix(r6):
    """6D (..., 6) -> rotation matrices by Gram-Schmidt; works on numpy arrays and torch tensors.

    Total: every input gives a proper rotation. A model's raw output can be degenerate (an untrained
    one whose clipped columns saturate to the same corner of [-1, 1]^3 gives two parallel vectors),
    and a "rotation" with a null column is no pose. Then the missing direction is completed
    deterministically: a zero first column becomes the x axis, and a second column parallel to the
    first is replaced by the world axis least aligned with it, made orthogonal."""
    if isinstance(r6, torch.Tensor):
        a1, a2 = r6[..., :3], r6[..., 3:6]
        eye = torch.eye(3, dtype=r6.dtype, device=r6.device)
        n1 = a1.norm(dim=-1, keepdim=True)
        b1 = torch.where(n1 > _DEGENERATE_NORM, a1 / n1.clamp_min(_DEGENERATE_NORM), eye[0].expand_as(a1))
        u = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
        nu = u.norm(dim=-1, keepdim=True)
        axis = eye[b1.abs().argmin(dim=-1)]
        v = axis - (b1 * axis).sum(-1, keepdim=True) * b1
        v = v / v.norm(dim=-1, keepdim=True)
        # clamp_min keeps the branch not taken finite, so no NaN flows back through torch.where
        b2 = torch.where(nu > _DEGENERATE_NORM, u / nu.clamp_min(_DEGENERATE_NORM), v)
        b3 = torch.cross(b1, b2, dim=-1)
        return torch.stack([b1, b2, b3], dim=-1)
    r6 = np.asarray(r6, dtype=np.float64)
    a1, a2 = r6[..., :3], r6[..., 3:6]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    b1 = np.where(n1 > _DEGENERATE_NORM, a1 / np.maximum(n1, _DEGENERATE_NORM), np.eye(3)[0])
    u = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    nu = np.linalg.norm(u, axis=-1, keepdims=True)
    axis = np.eye(3)[np.abs(b1).argmin(axis=-1)]
    v = axis - (b1 * axis).sum(-1, keepdims=True) * b1
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    b2 = np.where(nu > _DEGENERATE_NORM, u / np.maximum(nu, _DEGENERATE_NORM), v)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def matrix_to_quaternion_wxyz(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as w, x, y, z with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4))
    for i, r in enumerate(flat):
        t = np.trace(r)
        if t > 0:
            s = np.sqrt(t + 1.0) * 2
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        q = np.asarray(q)
        out[i] = q * np.sign(q[0]) if q[0] != 0 else q
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).reshape(m.shape[:-2] + (4,))


def quaternion_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def slerp_matrices(r0: np.ndarray, r1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between two rotation matrices at fractions t (K,) -> (K, 3, 3)."""
    q0, q1 = matrix_to_quaternion_wxyz(r0), matrix_to_quaternion_wxyz(r1)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    t = np.asarray(t, dtype=np.float64)[:, None]
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
    else:
        theta = np.arccos(dot)
        q = (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)
    return quaternion_wxyz_to_matrix(q)


def pose_to_proprio(position: np.ndarray, rotation: np.ndarray, gripper_open: float) -> np.ndarray:
    """The 10-D proprioception vector System 1 is conditioned on: xyz, 6D rotation, gripper openness."""
    return np.concatenate([np.asarray(position, np.float64), matrix_to_rot6d(rotation), [gripper_open]]).astype(
        np.float32
    )


def absolute_to_relative(positions, rotations, cur_position, cur_rotation):
    """World-frame waypoints -> (position offset from the current tool point, rotation relative to the
    current tool orientation R_cur^T R_i). The offsets stay in the world frame so they share axes with the
    point cloud; only rotations are expressed in the tool frame."""
    rel_pos = np.asarray(positions) - np.asarray(cur_position)[None]
    rel_rot = np.einsum("ji,njk->nik", np.asarray(cur_rotation), np.asarray(rotations))
    return rel_pos, rel_rot


def relative_to_absolute(rel_pos, rel_rot, cur_position, cur_rotation):
    """Inverse of absolute_to_relative; numpy or torch (batched over a leading dimension for torch)."""
    if isinstance(rel_pos, torch.Tensor):
        pos = rel_pos + cur_position[..., None, :]
        rot = cur_rotation[..., None, :, :] @ rel_rot
        return pos, rot
    pos = np.asarray(rel_pos) + np.asarray(cur_position)[None]
    rot = np.einsum("ij,njk->nik", np.asarray(cur_rotation), np.asarray(rel_rot))
    return pos, rot
