"""Helpers for the simulator tests: CALVIN-layout states built directly (no physics in between)."""

from __future__ import annotations

import numpy as np

from openhelix_ros.sim import scene as sc


def neutral_robot_obs() -> np.ndarray:
    robot_obs = np.zeros(15)
    robot_obs[6] = 0.08
    robot_obs[7:14] = sc.ROBOT_NEUTRAL_JOINTS
    robot_obs[14] = 1.0
    return robot_obs


def table_z(name: str) -> float:
    """Height of a block's centre when it rests on the desk top."""
    return sc.BLOCK_SIZES[name][2] / 2 + 0.0005


def base_scene() -> np.ndarray:
    """Door right, drawer closed, lights off, the three blocks apart on the table, unrotated."""
    scene = np.zeros(24)
    for index, (name, x) in enumerate(zip(sc.BLOCK_NAMES, (-0.20, 0.0, 0.20), strict=True)):
        scene[6 + 6 * index:12 + 6 * index] = [x, -0.10, table_z(name), 0.0, 0.0, 0.0]
    return scene


def set_block(scene: np.ndarray, name: str, xyz, yaw: float = 0.0) -> np.ndarray:
    scene = scene.copy()
    index = sc.BLOCK_NAMES.index(name)
    scene[6 + 6 * index:12 + 6 * index] = [*xyz, 0.0, 0.0, yaw]
    return scene


def info_for(env, scene: np.ndarray, robot_obs: np.ndarray | None = None) -> dict:
    """Reset to a state and return ``env.get_info()`` for it (no physics step in between)."""
    env.reset(robot_obs=neutral_robot_obs() if robot_obs is None else robot_obs, scene_obs=scene)
    return env.get_info()


def holding(env, name: str, xyz) -> tuple[np.ndarray, np.ndarray]:
    """(robot_obs, block xyz) with ``name`` squeezed between the fingers at ``xyz`` (yaw 0)."""
    width = min(sc.BLOCK_SIZES[name][:2])
    # Hand yaw 0 closes the fingers along y, across the block's local y side.
    robot_obs = env.robot_obs_for_tcp(xyz, yaw=0.0, gripper_width=width - 0.002, gripper_action=-1.0)
    return robot_obs, np.asarray(robot_obs[:3])
