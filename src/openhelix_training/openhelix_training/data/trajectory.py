"""Keyposes and trajectories to the next keypose (3D Diffuser Actor's CALVIN recipe), shared by the
CALVIN-layout and rosbag readers."""

from __future__ import annotations

import numpy as np

from ..geometry import absolute_to_relative, euler_xyz_to_matrix, matrix_to_rot6d, slerp_matrices


def discover_keyposes(positions: np.ndarray, gripper: np.ndarray, stop_threshold: float = 1e-3,
                      min_gap: int = 4) -> list[int]:
    """Indices of keyposes in one demonstration window: where the gripper command changes (the frame
    before the change), where the arm comes to rest (per-step displacement below `stop_threshold` metres
    after moving), and the last frame. Keyposes closer than `min_gap` frames to the previous one are
    dropped, except the last frame."""
    positions, gripper = np.asarray(positions, float), np.asarray(gripper, float)
    n = len(positions)
    if n == 0:
        return []
    speed = np.r_[np.inf, np.linalg.norm(np.diff(positions, axis=0), axis=1)]
    keys: list[int] = []
    for i in range(1, n - 1):
        changed = np.sign(gripper[i + 1]) != np.sign(gripper[i])
        stopped = speed[i] < stop_threshold <= speed[i - 1]
        if (changed or stopped) and (not keys or i - keys[-1] >= min_gap):
            keys.append(i)
    if not keys or keys[-1] != n - 1:
        keys.append(n - 1)
    return keys


def resample_path(positions: np.ndarray, rotations: np.ndarray, gripper: np.ndarray, length: int):
    """Interpolates a path of K >= 1 poses to `length` points uniformly in time: positions linearly,
    rotations by slerp, gripper by the nearest earlier sample (a command does not blend)."""
    k = len(positions)
    if k == 1:
        return (np.repeat(positions, length, 0), np.repeat(rotations, length, 0), np.repeat(gripper, length, 0))
    t = np.linspace(0, k - 1, length)
    lo = np.minimum(np.floor(t).astype(int), k - 2)
    frac = t - lo
    pos = positions[lo] * (1 - frac[:, None]) + positions[lo + 1] * frac[:, None]
    rot = np.stack([slerp_matrices(rotations[a], rotations[a + 1], np.array([f]))[0] for a, f in zip(lo, frac, strict=True)])
    grip = gripper[np.minimum(np.floor(t + 1e-9).astype(int), k - 1)]
    return pos, rot, grip


def trajectory_to_next_keypose(tcp_pos: np.ndarray, tcp_euler: np.ndarray, gripper: np.ndarray, frame: int,
                               keyposes: list[int], length: int = 20) -> dict:
    """The trajectory from `frame` to the first keypose after it (inclusive of both ends), resampled to
    `length` waypoints and expressed relative to the pose at `frame`.

    gripper: +1 open / -1 close per frame (CALVIN's gripper action). Returns rel_positions (L, 3),
    rot6d (L, 6) of R_frame^T R_i, gripper_open (L,) in {0, 1}, and the keypose index used."""
    nxt = next((k for k in keyposes if k > frame), keyposes[-1])
    nxt = max(nxt, frame)
    rots = euler_xyz_to_matrix(np.asarray(tcp_euler[frame : nxt + 1]))
    pos, rot, grip = resample_path(np.asarray(tcp_pos[frame : nxt + 1], float), rots,
                                   np.asarray(gripper[frame : nxt + 1], float), length)
    cur_rot = euler_xyz_to_matrix(np.asarray(tcp_euler[frame]))
    rel_pos, rel_rot = absolute_to_relative(pos, rot, tcp_pos[frame], cur_rot)
    return {
        "rel_positions": rel_pos.astype(np.float32),
        "rot6d": matrix_to_rot6d(rel_rot).astype(np.float32),
        "gripper_open": (grip > 0).astype(np.float32),
        "keypose": int(nxt),
    }


def trajectory_of_next_frames(tcp_pos: np.ndarray, tcp_euler: np.ndarray, last_action: np.ndarray, frame: int,
                              length: int = 20) -> dict:
    """The poses of frames `frame`, `frame` + 1, ... `frame` + length - 1 as they were recorded (the last
    frame repeated past the end), relative to the pose at `frame`: waypoint j is where the tool was j
    control steps later. This is the graph's contract (waypoint j is due j steps after the observation,
    docs/ros_graph.md) and suits a policy that replans at every step and executes waypoint 1; the keypose
    trajectories above stretch 20 waypoints over however many steps the keypose is away, so executing one
    waypoint per step crawls (1/19 of the remaining way per step).

    last_action: CALVIN's robot_obs[14] per frame (+1 open / -1 close), the gripper command that brought
    the tool to that frame; so waypoint 1 carries the command given at `frame`."""
    n = len(tcp_pos)
    idx = np.minimum(np.arange(frame, frame + length), n - 1)
    rots = euler_xyz_to_matrix(np.asarray(tcp_euler)[idx])
    cur_rot = euler_xyz_to_matrix(np.asarray(tcp_euler[frame]))
    rel_pos, rel_rot = absolute_to_relative(np.asarray(tcp_pos, float)[idx], rots, tcp_pos[frame], cur_rot)
    return {
        "rel_positions": rel_pos.astype(np.float32),
        "rot6d": matrix_to_rot6d(rel_rot).astype(np.float32),
        "gripper_open": (np.asarray(last_action, float)[idx] > 0).astype(np.float32),
        "keypose": int(idx[-1]),
    }


def trajectory_of_commands(tcp_pos: np.ndarray, tcp_euler: np.ndarray, last_action: np.ndarray,
                           command_pos: np.ndarray, command_rot: np.ndarray, command_gripper: np.ndarray,
                           frame: int, length: int = 20) -> dict:
    """Waypoint 0 is the pose at `frame`; waypoint j >= 1 is the target the demonstrator commanded at
    frame `frame` + j - 1 (the last command repeated past the end), relative to the pose at `frame`.

    What a graph policy publishes is a command (waypoint j is the target due j steps after the
    observation, docs/ros_graph.md), and a command is not where the tool then was: the arm's controller
    covers about half of a commanded step per control step, and against a button, a switch or a drawer
    the command must lead the tool into the contact to push at all. A policy trained on recorded poses
    ("frames") commands where the tool went, so it moves at half speed and stops at the surface.

    command_pos (N, 3), command_rot (N, 3, 3), command_gripper (N,) (+1 open / -1 close): per frame, the
    first waypoint the demonstrator published for that frame's observation."""
    n = len(tcp_pos)
    idx = np.minimum(np.arange(frame, frame + length - 1), n - 1)
    cur_rot = euler_xyz_to_matrix(np.asarray(tcp_euler[frame]))
    positions = np.concatenate([np.asarray(tcp_pos, float)[frame][None], np.asarray(command_pos, float)[idx]])
    rotations = np.concatenate([cur_rot[None], np.asarray(command_rot, float)[idx]])
    gripper = np.r_[float(last_action[frame]), np.asarray(command_gripper, float)[idx]]
    rel_pos, rel_rot = absolute_to_relative(positions, rotations, tcp_pos[frame], cur_rot)
    return {
        "rel_positions": rel_pos.astype(np.float32),
        "rot6d": matrix_to_rot6d(rel_rot).astype(np.float32),
        "gripper_open": (gripper > 0).astype(np.float32),
        "keypose": int(idx[-1]),
    }
