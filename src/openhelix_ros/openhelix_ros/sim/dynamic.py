"""CALVIN-D: the target block of a grasp-related subtask moves while the robot reaches for it.

Four motions, as in OpenHelix's dynamic evaluation: ``left`` (-x), ``forward`` (+y, away from the
robot), ``diagonal`` (-x +y) and ``circle`` (a circle of ``dynamic_circle_radius`` through the start
position). Linear motions turn back after ``dynamic_amplitude`` metres, and every motion turns back at
the edge of the free strip of table (10 cm in front of the door), so a block never wanders off the
desk or against the cabinet. The block is driven by setting its velocity before
every physics substep (friction still acts, so it slides rather than teleports) and stops for good once
the robot touches it or it leaves the table surface.
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb

from openhelix_ros.sim import scene as sc

# Task -> block that moves. Grasp-related subtasks whose target block starts on the table top.
DYNAMIC_TASKS: dict[str, str] = {}
for _colour in ("red", "blue", "pink"):
    DYNAMIC_TASKS[f"lift_{_colour}_block_table"] = f"block_{_colour}"
    DYNAMIC_TASKS[f"rotate_{_colour}_block_left"] = f"block_{_colour}"
    DYNAMIC_TASKS[f"rotate_{_colour}_block_right"] = f"block_{_colour}"

_DIRECTIONS = {"left": (-1.0, 0.0), "forward": (0.0, 1.0), "diagonal": (-math.sqrt(0.5), math.sqrt(0.5))}
# Free strip of table the moving block stays in (between the desk's front edge and the cabinet).
FREE_STRIP_X = (-0.33, 0.33)
FREE_STRIP_Y = (-0.16, -0.05)  # stays 10 cm in front of the door, clear of it when rotated


def _inside_strip(xy: np.ndarray) -> bool:
    return FREE_STRIP_X[0] < xy[0] < FREE_STRIP_X[1] and FREE_STRIP_Y[0] < xy[1] < FREE_STRIP_Y[1]


class BlockMotion:
    """Drives at most one block at a time; owned by ``PlayTableEnv``."""

    def __init__(self, config):
        self.config = config
        self.block: str | None = None
        self.origin = np.zeros(2)
        self.sign = 1.0
        self.angle = 0.0
        self.centre = np.zeros(2)

    @property
    def active(self) -> bool:
        return self.block is not None

    def snapshot(self) -> tuple:
        return (self.block, self.origin.copy(), self.sign, self.angle, self.centre.copy())

    def restore(self, snapshot: tuple) -> None:
        self.block, self.origin, self.sign, self.angle, self.centre = snapshot

    def stop(self) -> None:
        self.block = None

    def start(self, env, block: str) -> None:
        position, _ = pb.getBasePositionAndOrientation(env.handles.blocks[block], physicsClientId=env.client)
        self.block = block
        self.origin = np.array(position[:2])
        self.sign = 1.0
        radius = self.config.dynamic_circle_radius
        # The circle passes through the start; its centre lies towards the middle of the free strip.
        towards_middle = np.array([-np.sign(position[0]) or 1.0, 0.0])
        self.centre = self.origin + radius * towards_middle
        self.angle = math.atan2(self.origin[1] - self.centre[1], self.origin[0] - self.centre[0])

    def velocity(self, position_xy: np.ndarray) -> np.ndarray:
        """Planar velocity (m/s) of the block for the configured mode at ``position_xy``."""
        speed = self.config.dynamic_speed
        mode = self.config.dynamic
        if mode == "circle":
            offset = position_xy - self.centre
            tangent = np.array([-offset[1], offset[0]])
            norm = np.linalg.norm(tangent)
            if norm < 1e-9:
                return np.zeros(2)
            tangent /= norm
            # Like the linear motions, turn back (along the arc) rather than leave the free strip.
            if not _inside_strip(position_xy + tangent * self.sign * 0.01):
                self.sign = -self.sign
            # Tangential speed plus a small radial correction that keeps the block on its circle.
            radial_error = np.linalg.norm(offset) - self.config.dynamic_circle_radius
            return speed * self.sign * tangent - 2.0 * radial_error * offset / max(np.linalg.norm(offset), 1e-9)
        direction = np.array(_DIRECTIONS[mode])
        travelled = float(np.dot(position_xy - self.origin, direction))
        out_of_strip = not _inside_strip(position_xy + direction * self.sign * 0.01)
        if out_of_strip or (self.sign > 0 and travelled > self.config.dynamic_amplitude) or (
                self.sign < 0 and travelled < -self.config.dynamic_amplitude):
            self.sign = -self.sign
        return speed * self.sign * direction

    def before_step(self, env) -> None:
        """Once per control step: stop for good if the robot touches the block or it left the table."""
        if self.block is None:
            return
        uid = env.handles.blocks[self.block]
        touching_robot = pb.getContactPoints(bodyA=uid, bodyB=env.robot, physicsClientId=env.client)
        position, _ = pb.getBasePositionAndOrientation(uid, physicsClientId=env.client)
        on_table = position[2] < sc.BLOCK_SIZES[self.block][2] / 2 + 0.01
        if touching_robot or not on_table:
            self.block = None

    def before_substep(self, env) -> None:
        if self.block is None:
            return
        uid = env.handles.blocks[self.block]
        position, orientation = pb.getBasePositionAndOrientation(uid, physicsClientId=env.client)
        linear, _ = pb.getBaseVelocity(uid, physicsClientId=env.client)
        planar = self.velocity(np.array(position[:2]))
        dt = 1.0 / (self.config.control_hz * self.config.physics_substeps)
        moved = [position[0] + planar[0] * dt, position[1] + planar[1] * dt, position[2]]
        pb.resetBasePositionAndOrientation(uid, moved, orientation, physicsClientId=env.client)
        pb.resetBaseVelocity(uid, [0.0, 0.0, linear[2]], [0.0, 0.0, 0.0], physicsClientId=env.client)
