"""A scripted expert for the 34 tasks, with privileged state (``robot_obs`` and ``scene_obs``).

For each task it plans a short list of waypoints (move above, descend, close the gripper, lift, ...).
Waypoint targets are functions of the *current* observation, so the expert follows a block that moves
(CALVIN-D). ``act`` returns CALVIN's absolute action ``(position, euler, gripper)`` with the gripper
pointing down; the commanded position advances towards the waypoint by at most a few centimetres
per step, so motions stay smooth and the IK always has a nearby solution.

Every position it plans from comes from the backend's ``SceneGeometry`` (``sim/geometry.py``): the
embedded play table's constants, or calvin_env's scene measured at run time. Heights are relative to
the desk's top, so the same plans work in both world frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from openhelix_ros.sim.geometry import SceneGeometry
from openhelix_ros.sim.tasks import check_task_names

OPEN, CLOSE = 1.0, -1.0
NEUTRAL_YAW = math.pi / 2  # hand yaw of the neutral pose; yaws near it keep joint 7 far from its limits
SAFE_HEIGHT = 0.24  # above the desk
HOLDING_TASKS = ("place_in_slider", "place_in_drawer", "stack_block")
FAST, SLOW, PUSH = 0.022, 0.012, 0.008  # metres per 30 Hz step
TILT_TOLERANCE = 0.05  # rad of measured pitch still taken for a hand pointing straight down
HAND_HALF_LENGTH, HAND_HALF_WIDTH = 0.107, 0.036  # the Panda hand's footprint about the TCP (measured in calvin)
SHELF_END_ROLL, SHELF_END_SWING = 0.3, 0.04  # rad, and the metres it swings the hand's body sideways
MAX_GRASP_WIDTH = 0.065  # widest block side the open fingers (8 cm) take with room to spare
OPEN_FINGER_REACH, FINGER_PAD_RADIUS = 0.045, 0.012  # open fingers' distance from the TCP, and their size


@dataclass
class View:
    """The parts of an observation the expert reasons about."""

    tcp: np.ndarray
    tcp_yaw: float
    tcp_pitch: float
    tcp_roll: float
    gripper_width: float
    gripper_action: float
    door: float
    drawer: float
    switch: float
    blocks: dict[str, tuple[np.ndarray, float]]  # name -> (position, yaw)

    @classmethod
    def from_obs(cls, obs: dict, block_names: tuple[str, ...]) -> View:
        robot, scene = np.asarray(obs["robot_obs"]), np.asarray(obs["scene_obs"])
        blocks = {name: (scene[6 + 6 * i:9 + 6 * i].copy(), float(scene[11 + 6 * i]))
                  for i, name in enumerate(block_names)}
        return cls(robot[:3].copy(), float(robot[5]), float(robot[4]), float(robot[3]), float(robot[6]), float(robot[14]), float(scene[0]),
                   float(scene[1]), float(scene[3]), blocks)


Target = Callable[[View], np.ndarray]


@dataclass
class Waypoint:
    target: Target
    yaw: float
    gripper: float
    speed: float = FAST
    tolerance: float = 0.012
    settle: int = 0  # steps to stay once reached (e.g. to let the fingers close)
    timeout: int = 90
    tilt: float = 0.0  # rad the fingers point away from the robot (+y at the neutral yaw); 0: straight down
    roll: float = 0.0  # rad the hand turns about y at the neutral yaw; < 0 swings its body towards -x


def _fixed(point) -> Target:
    point = np.asarray(point, dtype=float)
    return lambda view: point


def _grasp_yaws(size, block_yaw: float) -> list[float]:
    """Hand yaws that put the fingers across the block's narrow horizontal side."""
    yaws = [block_yaw] if size[1] < size[0] else [block_yaw + math.pi / 2] if size[0] < size[1] else \
        [block_yaw, block_yaw + math.pi / 2]
    return [y + k * math.pi for y in yaws for k in range(-3, 4)]


def grasp_yaw(size, block_yaw: float, centre: float = NEUTRAL_YAW) -> float:
    """The grasping yaw closest to ``centre`` for a block of ``size`` (its full extents)."""
    return min(_grasp_yaws(size, block_yaw), key=lambda y: abs(y - centre))


def _footprint_half_x(size, yaw: float) -> float:
    lx, ly, _ = size
    return abs(math.cos(yaw)) * lx / 2 + abs(math.sin(yaw)) * ly / 2


def held_block(view: View) -> str | None:
    """The block between the fingers, if any (closest block centre within 4 cm of the TCP)."""
    best, distance = None, 0.04
    for name, (position, _) in view.blocks.items():
        d = float(np.linalg.norm(position - view.tcp))
        if d < distance:
            best, distance = name, d
    return best


class ScriptedExpert:
    """``ScriptedExpert(env).act(obs, task)`` -> absolute action (position, euler, gripper).

    ``geometry``: the scene's; by default the env's own (``env.geometry``), else its backend's."""

    def __init__(self, env, geometry: SceneGeometry | None = None):
        if geometry is None:
            geometry = getattr(env, "geometry", None)
        if geometry is None:
            from openhelix_ros.sim.backends import scene_geometry

            geometry = scene_geometry(getattr(env, "backend", "embedded"))
        self.env = env
        self.g = geometry
        self._task: str | None = None
        self._episode_marker: tuple | None = None
        self._plan: list[Waypoint] = []
        self._index = 0
        self._steps_here = 0
        self._settled = 0
        self._command: np.ndarray | None = None
        self._yaw = NEUTRAL_YAW
        self._tilt = 0.0
        self._roll = 0.0

    def reset(self) -> None:
        """Forget the current plan (the next ``act`` plans afresh)."""
        self._task = None

    # ------------------------------------------------------------------------------------ acting
    def act(self, obs: dict, task: str):
        check_task_names([task])
        view = View.from_obs(obs, self.g.block_names)
        marker = (id(self.env), getattr(self.env, "steps", None))
        # A new plan when the task changes or the environment was reset (its step counter went back).
        if task != self._task or (self._episode_marker is not None and marker[1] is not None
                                  and self._episode_marker[1] is not None and marker[1] < self._episode_marker[1]):
            self._start(task, view)
        self._episode_marker = marker
        return self._follow(view)

    def _start(self, task: str, view: View) -> None:
        self._task = task
        self._plan = self._make_plan(task, view)
        self._index = 0
        self._steps_here = 0
        self._settled = 0
        self._command = view.tcp.copy()
        self._yaw = min((view.tcp_yaw + k * 2 * math.pi for k in (-1, 0, 1)), key=lambda y: abs(y - NEUTRAL_YAW))
        # A hand left tilted (after the calvin switch) turns back from where it is; straight down is 0.
        self._tilt = -view.tcp_pitch if abs(view.tcp_pitch) > TILT_TOLERANCE else 0.0
        roll = math.remainder(view.tcp_roll - math.pi, 2 * math.pi)
        self._roll = roll if abs(roll) > TILT_TOLERANCE else 0.0

    def _follow(self, view: View):
        if self._index >= len(self._plan):
            last = self._plan[-1] if self._plan else Waypoint(_fixed(view.tcp), self._yaw, OPEN)
            return self._action(self._command, self._yaw, last.gripper, self._tilt, self._roll)
        waypoint = self._plan[self._index]
        target = np.asarray(waypoint.target(view), dtype=float)
        delta = target - self._command
        distance = float(np.linalg.norm(delta))
        if distance > waypoint.speed:
            delta *= waypoint.speed / distance
        self._command = self._command + delta
        # Do not let the command run away from a blocked arm: stay within 4 cm of the real TCP.
        lag = self._command - view.tcp
        if np.linalg.norm(lag) > 0.04:
            self._command = view.tcp + lag * 0.04 / np.linalg.norm(lag)
        yaw_delta = float(np.clip(waypoint.yaw - self._yaw, -0.09, 0.09))
        self._yaw += yaw_delta
        self._tilt += float(np.clip(waypoint.tilt - self._tilt, -0.09, 0.09))
        self._roll += float(np.clip(waypoint.roll - self._roll, -0.09, 0.09))
        self._steps_here += 1
        reached = (np.linalg.norm(target - view.tcp) < waypoint.tolerance and abs(waypoint.yaw - self._yaw) < 1e-6
                   and abs(waypoint.tilt - self._tilt) < 1e-6 and abs(waypoint.roll - self._roll) < 1e-6)
        if reached:
            self._settled += 1
        if (reached and self._settled > waypoint.settle) or self._steps_here > waypoint.timeout:
            self._index += 1
            self._steps_here = 0
            self._settled = 0
        return self._action(self._command, self._yaw, waypoint.gripper, self._tilt, self._roll)

    @staticmethod
    def _action(position: np.ndarray, yaw: float, gripper: float, tilt: float = 0.0, roll: float = 0.0):
        # XYZ Euler: the gripper points down (roll pi); a pitch of -tilt leans the fingers towards +y at
        # the neutral yaw, and an extra roll turns the hand about y there.
        pitch = -tilt if tilt else 0.0  # +0.0 straight down, exactly as before tilts existed (not -0.0)
        return (np.asarray(position, dtype=float).copy(), np.array([math.pi + roll, pitch, yaw]), float(gripper))

    # ------------------------------------------------------------------------------------ geometry
    def _size(self, name: str) -> np.ndarray:
        return self.g.block_size(name)

    def _grasp_height(self, name: str, support_top: float) -> float:
        """TCP height for grasping a block resting on a surface at ``support_top``."""
        return support_top + max(self._size(name)[2] / 2, self.g.fingertip_below_tcp + 0.006)

    def _support_top(self, position: np.ndarray, name: str) -> float:
        return float(position[2] - self._size(name)[2] / 2)

    def _fingers_hit_neighbour(self, view: View, name: str, yaw: float) -> bool:
        """Whether an open finger, coming down at ``yaw`` to take ``name``, would land on another block."""
        centre = view.blocks[name][0][:2]
        axis = np.array([math.sin(yaw), -math.cos(yaw)])  # the fingers open along this (x at the neutral yaw)
        for other, (position, _) in view.blocks.items():
            if other == name or abs(position[2] - view.blocks[name][0][2]) > 0.03:
                continue
            half = float(max(self._size(other)[:2])) / 2
            for side in (-1.0, 1.0):
                finger = centre + side * OPEN_FINGER_REACH * axis
                if np.linalg.norm(position[:2] - finger) < half + FINGER_PAD_RADIUS:
                    return True
        return False

    def _on_shelf(self, position: np.ndarray) -> bool:
        return bool(position[1] > self.g.shelf_y[0] - 0.02)

    def _shelf_gap(self, door: float, x: float) -> tuple[float, float]:
        """The stretch of shelf around ``x`` a hand can come down into: between the cabinet's side walls,
        and beside the door where the door stands in the way (it leans over what it covers)."""
        low, high = self.g.shelf_x
        if self.g.reach_over_door:
            return low, high
        door_low, door_high = self.g.door_span_at(door)
        return (max(low, door_high), high) if x >= door_high else (low, min(high, door_low))

    @staticmethod
    def _hand_reach(yaw: float) -> float:
        """How far the hand's body reaches along x from the TCP at ``yaw``."""
        return HAND_HALF_LENGTH * abs(math.sin(yaw)) + HAND_HALF_WIDTH * abs(math.cos(yaw))

    def _shelf_roll(self, x: float, yaw: float, gap: tuple[float, float]) -> float:
        """The hand's turn about y for coming down at ``x``: a body that would reach past an end of ``gap``
        swings away from it (4 cm); the fingers, a block's width apart, stay within 1.2 cm of level."""
        reach = self._hand_reach(yaw)
        if x + reach > gap[1]:
            return -SHELF_END_ROLL
        if x - reach < gap[0]:
            return SHELF_END_ROLL
        return 0.0

    # ------------------------------------------------------------------------------------ planning
    def _make_plan(self, task: str, view: View) -> list[Waypoint]:
        return self._prelude(task, view) + self._task_plan(task, view)

    def _prelude(self, task: str, view: View) -> list[Waypoint]:
        """Leave the previous subtask's end pose safely. A subtask can be judged complete while the hand
        still touches things (a rotated block still between the fingers, fingers against the door's
        knob), so: let go of a block unless this task needs it held, and rise straight up out of the
        cabinet before moving anywhere else."""
        waypoints = []
        gripper = CLOSE if task in HOLDING_TASKS else view.gripper_action
        if task not in HOLDING_TASKS and held_block(view) is not None:
            here = view.tcp.copy()
            waypoints.append(Waypoint(_fixed(here), self._yaw, OPEN, tolerance=1.0, settle=6, timeout=8))
            # Up and clear of the block before the fingers may close again.
            waypoints.append(Waypoint(_fixed(here + [0, 0, 0.08]), self._yaw, OPEN, speed=SLOW, tolerance=0.02,
                                      timeout=30))
            gripper = OPEN
        g = self.g
        if view.tcp[1] > g.cabinet_front_y:
            if view.tcp[2] < g.cabinet_clear_height - 0.01:
                up = np.array([view.tcp[0], view.tcp[1], g.cabinet_clear_height])
                waypoints.append(Waypoint(_fixed(up), self._yaw, gripper, speed=SLOW, tolerance=0.02, timeout=45))
            if not (task.endswith("_slider") or task.startswith("move_slider")):
                # Out in front of the cabinet at that height, so that no straight move towards the desk
                # passes through the door.
                out = np.array([view.tcp[0], g.cabinet_front_y - 0.05, g.cabinet_clear_height])
                waypoints.append(Waypoint(_fixed(out), self._yaw, gripper, tolerance=0.03, timeout=45))
        return waypoints

    def _task_plan(self, task: str, view: View) -> list[Waypoint]:
        parts = task.split("_")
        if task.startswith(("lift_", "rotate_", "push_")) and "block" in parts and task != "push_into_drawer":
            name = f"block_{parts[1]}"
            if parts[0] == "lift":
                return self._lift(view, name)
            if parts[0] == "rotate":
                return self._rotate(view, name, +1 if parts[-1] == "left" else -1)
            return self._push(view, name, +1 if parts[-1] == "right" else -1)
        planners = {
            "move_slider_left": lambda: self._slide_door(view, -1),
            "move_slider_right": lambda: self._slide_door(view, +1),
            "open_drawer": lambda: self._drawer(view, opening=True),
            "close_drawer": lambda: self._drawer(view, opening=False),
            # Carried high: the block hanging below the hand must clear the door (0.29 m with its knob).
            "place_in_slider": lambda: self._place_in_slider(view),
            "place_in_drawer": lambda: self._place(view, self._drawer_drop(), yaw=self._yaw_along_x()),
            "push_into_drawer": lambda: self._into_drawer(view),
            "stack_block": lambda: self._stack(view),
            "unstack_block": lambda: self._unstack(view),
            "turn_on_led": lambda: self._press_button(view),
            "turn_off_led": lambda: self._press_button(view),
            "turn_on_lightbulb": lambda: self._push_switch(view, +1),
            "turn_off_lightbulb": lambda: self._push_switch(view, -1),
        }
        return planners[task]()

    def _rise(self, view: View, yaw: float, gripper: float, height: float | None = None) -> Waypoint:
        height = self.g.table_top + SAFE_HEIGHT if height is None else height
        return Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], max(height, v.tcp[2])]), yaw, gripper,
                        tolerance=0.03, timeout=40)

    def _grasp(self, view: View, name: str, yaw_centre: float = NEUTRAL_YAW) -> tuple[list[Waypoint], float]:
        """Waypoints that end with ``name`` between closed fingers; returns them and the hand yaw (the
        last waypoint's ``tilt`` and ``roll`` are the hand's lean, which the caller keeps while it lifts)."""
        position, block_yaw = view.blocks[name]
        size = self._size(name)
        yaw = grasp_yaw(size, block_yaw, yaw_centre)
        if self._fingers_hit_neighbour(view, name, yaw):
            # Another block stands where an open finger would come down: close the fingers the other way
            # round if the block fits between them so, else the nearest yaw that misses it.
            sides = [block_yaw + k * math.pi / 2 for k in range(-6, 7)] if max(size[:2]) <= MAX_GRASP_WIDTH \
                else _grasp_yaws(size, block_yaw)
            clear = [y for y in sides if not self._fingers_hit_neighbour(view, name, y)]
            if clear:
                yaw = min(clear, key=lambda y: abs(y - yaw_centre))
        roll = tilt = 0.0
        support = self._support_top(position, name)
        z_grasp = self._grasp_height(name, support)
        table = self.g.table_top
        if self._on_shelf(position):
            # The hand must lie along x to fit between the shelf's front and back: across the block's
            # long side too, where that fits between the open fingers.
            if max(size[:2]) <= MAX_GRASP_WIDTH:
                yaw = min((block_yaw + k * math.pi / 2 for k in range(-6, 7)), key=lambda y: abs(y - NEUTRAL_YAW))
            roll = self._shelf_roll(float(position[0]), yaw, self._shelf_gap(view.door, float(position[0])))
            tilt = self.g.shelf_grasp_tilt
            hover = self.g.shelf_hover_height
        else:  # from the desk, or from the drawer (below the desk: from high above it)
            hover = max(position[2] + 0.10, table + (SAFE_HEIGHT if support < table - 0.02 else 0.12))

        def above(v: View) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0], p[1], hover])

        def at(v: View) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0], p[1], z_grasp])

        safe = table + SAFE_HEIGHT
        high = safe if view.tcp[2] < safe - 0.05 else view.tcp[2]
        transit = []
        if self._on_shelf(position) and not self.g.reach_over_door:
            # Over the cabinet at the height that clears the door, and only then down to the block: a hand
            # coming down on the way would drag the door along.
            transit = [Waypoint(lambda v: np.array([*v.blocks[name][0][:2], self.g.cabinet_clear_height]), yaw, OPEN,
                                tolerance=0.03, timeout=80)]
        return [
            self._rise(view, self._yaw, OPEN, height=high),
            *transit,
            Waypoint(above, yaw, OPEN, tolerance=0.012, timeout=80, tilt=tilt, roll=roll),
            Waypoint(at, yaw, OPEN, speed=SLOW, tolerance=0.008, timeout=60, tilt=tilt, roll=roll),
            Waypoint(at, yaw, CLOSE, speed=SLOW, tolerance=0.02, settle=10, timeout=20, tilt=tilt, roll=roll),
        ], yaw

    def _lift(self, view: View, name: str) -> list[Waypoint]:
        position = view.blocks[name][0]
        clear_door = self._clear_door_for(view, position[0]) if self._on_shelf(position) else []
        waypoints, yaw = self._grasp(view, name)
        waypoints = clear_door + waypoints
        z = view.blocks[name][0][2] + 0.14
        return waypoints + [Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], z]), yaw, CLOSE, speed=SLOW,
                                     tolerance=0.01, timeout=60, tilt=waypoints[-1].tilt, roll=waypoints[-1].roll)]

    def _rotate(self, view: View, name: str, direction: int) -> list[Waypoint]:
        turn = direction * math.radians(85)
        waypoints, yaw = self._grasp(view, name, yaw_centre=NEUTRAL_YAW - turn / 2)
        position = view.blocks[name][0]
        z_grasp = self._grasp_height(name, self._support_top(position, name))
        hold = {}

        def lifted(v: View) -> np.ndarray:
            hold.setdefault("xy", v.tcp[:2].copy())
            return np.array([*hold["xy"], z_grasp + 0.02])

        def down(v: View) -> np.ndarray:
            return np.array([*hold.get("xy", v.tcp[:2]), z_grasp + 0.006])

        return waypoints + [
            Waypoint(lifted, yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=30),
            Waypoint(lifted, yaw + turn, CLOSE, speed=SLOW, tolerance=0.01, settle=3, timeout=40),
            Waypoint(down, yaw + turn, CLOSE, speed=SLOW, tolerance=0.006, timeout=30),
            # Let go a few millimetres above the desk: the oracle then sees the block resting on the desk
            # only once the fingers are off it, so the next subtask does not start with the robot
            # touching it (which e.g. push_into_drawer forbids).
            Waypoint(down, yaw + turn, OPEN, speed=SLOW, tolerance=0.03, settle=8, timeout=20),
            self._rise(view, yaw + turn, OPEN, height=z_grasp + 0.12),
        ]

    def _push(self, view: View, name: str, direction: int) -> list[Waypoint]:
        position, block_yaw = view.blocks[name]
        start_offset = _footprint_half_x(self._size(name), block_yaw) + 0.025
        # Fingertips 6-10 mm above the desk, at most at the block's centre.
        table, tip = self.g.table_top, self.g.fingertip_below_tcp
        z = float(np.clip(position[2], table + tip + 0.006, table + tip + 0.010))
        yaw = NEUTRAL_YAW  # hand long along the push: it stays clear of the neighbours
        x_end = position[0] + direction * 0.16

        def behind(v: View, height: float) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0] - direction * start_offset, p[1], height])

        def ahead(v: View) -> np.ndarray:
            # Closed loop on the block's y: pushing through its centre keeps it from spinning away.
            return np.array([x_end, v.blocks[name][0][1], z])

        return [
            self._rise(view, self._yaw, CLOSE, height=table + 0.12),
            Waypoint(lambda v: behind(v, table + 0.10), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(lambda v: behind(v, z), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(ahead, yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=90),
            self._rise(view, yaw, CLOSE, height=table + 0.12),
        ]

    def _door_blocks_reach(self, door: float, x: float) -> bool:
        """Whether the door stands in the way of a hand low on the shelf at ``x``: never where the
        forearm passes over a low door; where the door itself stands (with 5 cm to spare) otherwise."""
        if self.g.reach_over_door:
            return False
        low, high = self.g.door_span_at(door)
        return low - 0.05 < x < high + 0.05

    def _clear_door_for(self, view: View, x: float, carrying: bool = False) -> list[Waypoint]:
        """Push the door out of the way of a reach to the shelf at ``x``, if it is in the way (a
        previous "move slider" may have left it half-way: the oracle is satisfied after 15 cm)."""
        if not self._door_blocks_reach(view.door, x):
            return []
        return self._slide_door(view, self._door_clearing_direction(x), full=True, carrying=carrying)

    def _door_clearing_direction(self, x: float) -> int:
        """Which way to push the door out of the way of a spot at ``x``: left for a spot on the right."""
        middle = (self.g.slider_left_slot[0] + self.g.slider_right_slot[0]) / 2
        return -1 if x > middle else +1

    def _door_after_clearing(self, door: float, x: float) -> float:
        """The door's joint value once pushed out of the way of ``x`` (to the end of its travel)."""
        low, high = self.g.door_range
        return high if self._door_clearing_direction(x) == self.g.door_direction else low

    def _slide_door(self, view: View, direction: int, full: bool = False, carrying: bool = False) -> list[Waypoint]:
        """Push the door's knob sideways; ``direction`` -1 moves the door (and its knob) left, +1 right."""
        g = self.g
        knob_x = g.door_knob_at(view.door)
        z, y = g.door_knob_z, g.door_knob_y
        reach = 0.022  # the closed fingers' half width, and a margin
        held = held_block(view) if carrying else None
        if held is not None:
            # Carrying a block (a door cleared on the way to the shelf): the block pushes the knob, its
            # bottom where the fingertips would be.
            size = self._size(held)
            below = view.tcp[2] - view.blocks[held][0][2] + size[2] / 2
            z += below - g.fingertip_below_tcp + 0.005
            reach = max(reach, _footprint_half_x(size, view.blocks[held][1]) + 0.012)
        side = -direction  # start on the side the door moves away from
        start_x = knob_x + side * (g.door_knob_half_width + reach)
        knob_ends = sorted((g.door_knob_at(g.door_range[0]), g.door_knob_at(g.door_range[1])))
        travel = 0.22
        if full:  # all the way to the joint limit
            travel = abs((knob_ends[0] if direction < 0 else knob_ends[1]) - knob_x) + 0.01
        end_x = float(np.clip(start_x + direction * travel, knob_ends[0] - 0.04, knob_ends[1] + 0.04))
        yaw = NEUTRAL_YAW  # hand long along x: it stays out of the door panel
        return [
            self._rise(view, self._yaw, CLOSE),
            Waypoint(_fixed([start_x, y, z + 0.08]), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(_fixed([start_x, y, z]), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(_fixed([end_x, y, z]), yaw, CLOSE, speed=PUSH, tolerance=0.012, timeout=90),
            Waypoint(_fixed([end_x, y, g.cabinet_clear_height]), yaw, CLOSE, speed=SLOW, tolerance=0.02, timeout=40),
        ]

    def _drawer(self, view: View, opening: bool) -> list[Waypoint]:
        """Take the handle (grasp it, or hook closed fingers behind its bar) and pull or push it."""
        g = self.g
        handle_y = g.drawer_grip_y - view.drawer
        z, x, table = g.drawer_handle_z, g.drawer_handle_x, g.table_top
        end_y = g.drawer_grip_y - (g.drawer_pull if opening else 0.0) + (0.0 if opening else 0.006)
        yaw = NEUTRAL_YAW + g.drawer_grip_yaw_offset
        approach = CLOSE if g.drawer_hook else OPEN
        taken = [Waypoint(_fixed([x, handle_y, z]), yaw, CLOSE, speed=SLOW, tolerance=0.02, settle=8, timeout=20)]
        let_go = [Waypoint(_fixed([x, end_y, z]), yaw, OPEN, speed=SLOW, tolerance=0.03, settle=6, timeout=15)]
        if g.drawer_hook:
            taken, let_go = [], []
        away = {}

        def back_away(v: View) -> np.ndarray:
            # 3 cm back from where the hand let go, fixed then: a target that followed the hand would
            # lead it away for as long as the waypoint lasts.
            away.setdefault("xyz", np.array([v.tcp[0], v.tcp[1] - 0.03, table + 0.10]))
            return away["xyz"]

        return [
            self._rise(view, self._yaw, approach, height=table + 0.10),
            Waypoint(_fixed([x, handle_y, table + 0.06]), yaw, approach, tolerance=0.012, timeout=80),
            Waypoint(_fixed([x, handle_y, z]), yaw, approach, speed=SLOW, tolerance=0.008, timeout=60),
            *taken,
            Waypoint(_fixed([x, end_y, z]), yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=90),
            *let_go,
            Waypoint(back_away, yaw, approach, tolerance=0.03, timeout=40),
        ]

    def _yaw_along_x(self) -> float:
        """The hand yaw nearest the current one with the hand's long side along x: the only way it fits
        into the shelf (between its front and back) and into the drawer."""
        return min((NEUTRAL_YAW + k * math.pi for k in (-1, 0, 1)), key=lambda y: abs(y - self._yaw))

    def _place_in_slider(self, view: View) -> list[Waypoint]:
        drop = self._slider_drop(view)
        clear_door = self._clear_door_for(view, drop[0], carrying=True)
        yaw = self._yaw_along_x()
        door = self._door_after_clearing(view.door, float(drop[0])) if clear_door else view.door
        roll = 0.0 if self.g.reach_over_door else self._shelf_roll(float(drop[0]), yaw,
                                                                   self._shelf_gap(door, float(drop[0])))
        # Carried high: the block hanging below the hand must clear the door and its knob.
        return clear_door + self._place(view, drop, yaw=yaw, carry_height=self.g.cabinet_clear_height, roll=roll)

    def _slider_drop(self, view: View) -> np.ndarray:
        """A free spot on the shelf: the compartment the door leaves open if nothing stands there, else
        the free spot farthest from the blocks already on the shelf (on the play table the shelf is open at
        the top, so a hand coming from above reaches behind the low door too). Where the door is too tall
        to reach over (calvin), a block is squeezed in beside another rather than the door moved, when
        it fits (``_squeeze_spot``)."""
        g = self.g
        held = held_block(view)
        on_shelf = [p[0] for n, (p, _) in view.blocks.items()
                    if n != held and g.shelf_y[0] < p[1] < g.shelf_y[1] and p[2] > g.shelf_top]
        left, right = g.slider_left_slot, g.slider_right_slot
        open_slot, other_slot = (left, right) if view.door < g.door_covers_left_above else (right, left)
        candidates = [open_slot[0], other_slot[0]]
        if g.reach_over_door:  # between the compartments; behind a tall door's edge wherever the door stands
            candidates.append((left[0] + right[0]) / 2)

        def clearance(x: float) -> float:
            return min((abs(x - other) for other in on_shelf), default=1.0)

        free = [c for c in candidates if clearance(c) > 0.11]
        reachable = [c for c in free if not self._door_blocks_reach(view.door, c)]
        if not reachable and not g.reach_over_door:
            # The slots are taken or behind the door, which is too tall to reach over. First squeeze the
            # block in beside one in the open stretch (moving the door is a side effect a later subtask may
            # not expect); else a free slot with the door pushed away; else squeeze in with the door moved.
            options = [(view.door, open_slot)]
            if not free:
                options.append((self._door_after_clearing(view.door, other_slot[0]), other_slot))
            for door, slot in options:
                spot = self._squeeze_spot(view, held, door, slot[0])
                if spot is not None:
                    reachable = [spot]
                    break
        x = (reachable or free or [max(candidates, key=clearance)])[0]
        return np.array([x, open_slot[1], g.shelf_top])

    def _squeeze_spot(self, view: View, held: str | None, door: float, slot_x: float) -> float | None:
        """x of a shelf spot in the stretch around ``slot_x`` (with the door at ``door``) where the held block
        fits beside the blocks already there and the hand (swung away from an end) fits between its ends:
        the one with the most room, up to 5 cm, nearest the slot. None when there is none."""
        g = self.g
        swing = self._hand_reach(self._yaw_along_x()) - SHELF_END_SWING
        held_half = float(min(self._size(held)[:2])) / 2 if held else 0.02  # held across its narrow side
        shelf_blocks = [(float(p[0]), _footprint_half_x(self._size(n), yaw)) for n, (p, yaw) in view.blocks.items()
                        if n != held and g.shelf_y[0] < p[1] < g.shelf_y[1] and p[2] > g.shelf_top]

        def room(x: float) -> float:  # the gap left beside the nearest shelf block
            return min((abs(x - bx) - half - held_half for bx, half in shelf_blocks), default=1.0)

        low, high = self._shelf_gap(door, slot_x)
        spots = [float(x) for x in np.arange(low + swing, high - swing, 0.0025) if room(x) > 0.006]
        if not spots:
            return None
        return max(spots, key=lambda x: (min(room(x), 0.05), -abs(x - slot_x)))

    def _drawer_drop(self) -> Callable[[View], np.ndarray]:
        """Where to let go of a block over the open drawer: the back of its exposed part (the hand just
        clears the desk's edge), or its front when a block already lies at the back, so that two fit."""
        g = self.g

        def drop(v: View) -> np.ndarray:
            opening = max(v.drawer, 0.12)
            front, back = g.drawer_front_y - opening + 0.045, g.drawer_front_y - 0.05
            inside = [p[1] for p, _ in v.blocks.values()
                      if p[2] < g.table_top - 0.05 and np.linalg.norm(p - v.tcp) > 0.04]
            candidates = [back, front, (front + back) / 2]
            y = next((c for c in candidates if min((abs(c - o) for o in inside), default=1.0) > 0.08),
                     (front + back) / 2)
            return np.array([g.drawer_slot_x, y, g.drawer_bottom + 0.01])

        return drop

    def _place(self, view: View, surface, name: str | None = None, yaw: float | None = None,
               release_gap: float = 0.012, carry_height: float | None = None, roll: float = 0.0) -> list[Waypoint]:
        """Carry the held block over ``surface`` (point or function of the view: x, y, surface top)
        and let go just above it (the hand turned by ``roll`` on the way down, see _shelf_roll)."""
        name = name or held_block(view) or self.g.block_names[0]
        carry_height = self.g.table_top + SAFE_HEIGHT if carry_height is None else carry_height
        surface_at = surface if callable(surface) else _fixed(surface)
        offset = view.tcp[2] - view.blocks[name][0][2]  # TCP above block centre while held
        half = self._size(name)[2] / 2
        yaw = self._yaw if yaw is None else yaw

        def over(v: View) -> np.ndarray:
            s = surface_at(v)
            return np.array([s[0], s[1], max(carry_height, s[2] + 0.15)])

        def release(v: View) -> np.ndarray:
            s = surface_at(v)
            return np.array([s[0], s[1], s[2] + half + release_gap + offset])

        return [
            self._rise(view, yaw, CLOSE, height=carry_height),
            Waypoint(over, yaw, CLOSE, tolerance=0.015, timeout=90, roll=roll),
            Waypoint(release, yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60, roll=roll),
            Waypoint(release, yaw, OPEN, speed=SLOW, tolerance=0.03, settle=10, timeout=20, roll=roll),
            self._rise(view, yaw, OPEN),
        ]

    def _into_drawer(self, view: View) -> list[Waypoint]:
        # Which block: the one on the table (the others are on the shelf by the task's precondition).
        g = self.g
        name = min(view.blocks, key=lambda n: abs(view.blocks[n][0][2] - g.table_top - self._size(n)[2] / 2)
                   + (0.0 if view.blocks[n][0][1] < g.shelf_y[0] else 1.0))
        waypoints, yaw = self._grasp(view, name)
        half = self._size(name)[2] / 2
        offset = self._grasp_height(name, g.table_top) - (g.table_top + half)  # TCP above the held block's centre
        drop = self._drawer_drop()
        safe = g.table_top + SAFE_HEIGHT

        def over(v: View) -> np.ndarray:
            s = drop(v)
            return np.array([s[0], s[1], safe])

        def release(v: View) -> np.ndarray:
            s = drop(v)
            return np.array([s[0], s[1], s[2] + half + 0.015 + offset])

        carry = min((NEUTRAL_YAW + k * math.pi for k in (-1, 0, 1)), key=lambda y: abs(y - yaw))
        return waypoints + [
            self._rise(view, yaw, CLOSE),
            Waypoint(over, carry, CLOSE, tolerance=0.015, timeout=90),
            Waypoint(release, carry, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(release, carry, OPEN, speed=SLOW, tolerance=0.03, settle=10, timeout=20),
            self._rise(view, carry, OPEN),
        ]

    def _stack(self, view: View) -> list[Waypoint]:
        g = self.g
        top = held_block(view) or g.block_names[0]
        # A block standing on the desk (not on the shelf, in the drawer or on another block).
        candidates = [n for n in view.blocks if n != top
                      and g.drawer_front_y - 0.02 < view.blocks[n][0][1] < g.shelf_y[0]
                      and g.table_top - 0.01 < view.blocks[n][0][2] < g.table_top + 0.06]
        bottom = candidates[0] if candidates else [n for n in view.blocks if n != top][0]

        def surface(v: View) -> np.ndarray:
            p = v.blocks[bottom][0]
            return np.array([p[0], p[1], p[2] + self._size(bottom)[2] / 2])

        bottom_yaw = view.blocks[bottom][1]
        top_size = self._size(top)
        # A square-footed block fits any way round; another is turned to lie along the one below.
        yaw = self._yaw if abs(top_size[0] - top_size[1]) < 1e-3 else grasp_yaw(top_size, bottom_yaw, self._yaw)
        return self._place(view, surface, name=top, yaw=yaw, release_gap=0.008)

    def _unstack(self, view: View) -> list[Waypoint]:
        # The top block: the higher of a pair standing one above the other.
        pairs = [(a, b) for a in view.blocks for b in view.blocks if a != b
                 and np.linalg.norm(view.blocks[a][0][:2] - view.blocks[b][0][:2]) < 0.04
                 and view.blocks[a][0][2] > view.blocks[b][0][2]]
        top = pairs[0][0] if pairs else max(view.blocks, key=lambda n: view.blocks[n][0][2])
        g = self.g
        waypoints, yaw = self._grasp(view, top)
        position = view.blocks[top][0]
        side = -1.0 if position[0] > sum(g.table_region_x) / 2 else 1.0
        y = float(np.clip(position[1], g.table_region_y[0] + 0.02, min(g.table_region_y[1] + 0.02,
                                                                      g.cabinet_front_y - 0.02)))
        target = np.array([position[0] + side * 0.13, y, g.table_top])
        lift = Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], position[2] + 0.08]), yaw, CLOSE, speed=SLOW,
                        tolerance=0.012, timeout=40)
        rest = self._place(view, target, name=top, yaw=yaw)
        # Use the known holding offset (the plan is built before the grasp happens).
        half = self._size(top)[2] / 2
        offset = self._grasp_height(top, g.table_top) - (g.table_top + half)
        rest[2] = Waypoint(_fixed(target + [0, 0, half + 0.012 + offset]), yaw, CLOSE, speed=SLOW,
                           tolerance=0.008, timeout=60)
        rest[3] = Waypoint(_fixed(target + [0, 0, half + 0.012 + offset]), yaw, OPEN, speed=SLOW,
                           tolerance=0.03, settle=10, timeout=20)
        return waypoints + [lift] + rest[1:]

    def _press_button(self, view: View) -> list[Waypoint]:
        g = self.g
        x, y = g.button_xy
        pressed_z = g.button_top - g.button_travel + g.fingertip_below_tcp - 0.004
        above = g.table_top + 0.12
        yaw = NEUTRAL_YAW
        return [
            self._rise(view, self._yaw, CLOSE, height=g.table_top + 0.15),
            Waypoint(_fixed([x, y, above]), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(_fixed([x, y, pressed_z]), yaw, CLOSE, speed=SLOW, tolerance=0.006, settle=3, timeout=45),
            Waypoint(_fixed([x, y, above]), yaw, CLOSE, speed=SLOW, tolerance=0.015, timeout=40),
        ]

    def _push_switch(self, view: View, direction: int) -> list[Waypoint]:
        """Push the switch's knob along its travel: ``direction`` +1 on (to the end of its travel), -1 off.
        The fingertips start 17 mm back (horizontally) from the contact point and end at it with the knob
        at its end."""
        g = self.g
        along = np.asarray(g.switch_direction)
        back = np.array([along[0], along[1], 0.0]) / np.linalg.norm(along[:2])
        contact = np.asarray(g.switch_on_contact if direction > 0 else g.switch_off_contact)
        start = g.switch_knob_at(view.switch) + contact - direction * back * 0.017
        end = g.switch_knob_at(g.switch_range[1] if direction > 0 else g.switch_range[0]) + contact
        if direction > 0:  # "on" pushes the knob's front face level (a knob that climbs a slope slides up)
            end[2] = start[2]
        above = np.array([start[0], start[1], max(g.table_top + 0.12, start[2] + 0.05)])
        yaw = NEUTRAL_YAW + g.switch_yaw_offset
        tilt = 0.0 if direction > 0 else g.switch_off_tilt
        return [
            self._rise(view, self._yaw, CLOSE, height=max(g.table_top + 0.15, above[2])),
            Waypoint(_fixed(above), yaw, CLOSE, tolerance=0.012, timeout=80, tilt=tilt),
            Waypoint(_fixed(start), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60, tilt=tilt),
            Waypoint(_fixed(end), yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=60, tilt=tilt),
            self._rise(view, yaw, CLOSE, height=max(g.table_top + 0.15, end[2] + 0.05)),
        ]


def expert_policy(env) -> Callable[[dict, str], object]:
    """The expert as a ``policy(obs, instruction)`` for ``evaluate_chains`` (instructions from
    ``openhelix_ros.sim.language`` map back to their task)."""
    from openhelix_ros.sim.language import task_for_instruction

    expert = ScriptedExpert(env)
    return lambda obs, instruction: expert.act(obs, task_for_instruction(instruction))
