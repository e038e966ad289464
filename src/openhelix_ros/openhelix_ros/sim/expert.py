"""A scripted expert for the 34 tasks, with privileged state (``robot_obs`` and ``scene_obs``).

For each task it plans a short list of waypoints (move above, descend, close the gripper, lift, ...).
Waypoint targets are functions of the *current* observation, so the expert follows a block that moves
(CALVIN-D). ``act`` returns CALVIN's absolute action ``(position, euler, gripper)`` with the gripper
pointing down; the commanded position advances towards the waypoint by at most a few centimetres
per step, so motions stay smooth and the IK always has a nearby solution.

The expert works on the embedded play table (it uses its geometry constants); it is not meant for the
real calvin_env, whose scene differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.tasks import check_task_names

OPEN, CLOSE = 1.0, -1.0
NEUTRAL_YAW = math.pi / 2  # hand yaw of the neutral pose; yaws near it keep joint 7 far from its limits
SAFE_HEIGHT = 0.24
CABINET_CLEAR_HEIGHT = 0.37  # TCP height at which a hand (and a block it holds) clears the door and knob
HOLDING_TASKS = ("place_in_slider", "place_in_drawer", "stack_block")
FINGERTIP_BELOW_TCP = 0.012  # the fingertips reach this far below the TCP (panda_grasptarget)
FAST, SLOW, PUSH = 0.022, 0.012, 0.008  # metres per 30 Hz step


@dataclass
class View:
    """The parts of an observation the expert reasons about."""

    tcp: np.ndarray
    tcp_yaw: float
    gripper_width: float
    gripper_action: float
    door: float
    drawer: float
    switch: float
    blocks: dict[str, tuple[np.ndarray, float]]  # name -> (position, yaw)

    @classmethod
    def from_obs(cls, obs: dict) -> View:
        robot, scene = np.asarray(obs["robot_obs"]), np.asarray(obs["scene_obs"])
        blocks = {name: (scene[6 + 6 * i:9 + 6 * i].copy(), float(scene[11 + 6 * i]))
                  for i, name in enumerate(sc.BLOCK_NAMES)}
        return cls(robot[:3].copy(), float(robot[5]), float(robot[6]), float(robot[14]), float(scene[0]),
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


def _fixed(point) -> Target:
    point = np.asarray(point, dtype=float)
    return lambda view: point


def _grasp_yaws(name: str, block_yaw: float) -> list[float]:
    """Hand yaws that put the fingers across the block's narrow horizontal side."""
    size = sc.BLOCK_SIZES[name]
    yaws = [block_yaw] if size[1] < size[0] else [block_yaw + math.pi / 2] if size[0] < size[1] else \
        [block_yaw, block_yaw + math.pi / 2]
    return [y + k * math.pi for y in yaws for k in range(-3, 4)]


def grasp_yaw(name: str, block_yaw: float, centre: float = NEUTRAL_YAW) -> float:
    """The grasping yaw closest to ``centre``."""
    return min(_grasp_yaws(name, block_yaw), key=lambda y: abs(y - centre))


def grasp_height(name: str, support_top: float) -> float:
    """TCP height for grasping a block resting on a surface at ``support_top``."""
    half = sc.BLOCK_SIZES[name][2] / 2
    return support_top + max(half, FINGERTIP_BELOW_TCP + 0.006)


def _footprint_half_x(name: str, yaw: float) -> float:
    lx, ly, _ = sc.BLOCK_SIZES[name]
    return abs(math.cos(yaw)) * lx / 2 + abs(math.sin(yaw)) * ly / 2


def _support_top(position: np.ndarray, name: str) -> float:
    return float(position[2] - sc.BLOCK_SIZES[name][2] / 2)


def held_block(view: View) -> str | None:
    """The block between the fingers, if any (closest block centre within 4 cm of the TCP)."""
    best, distance = None, 0.04
    for name, (position, _) in view.blocks.items():
        d = float(np.linalg.norm(position - view.tcp))
        if d < distance:
            best, distance = name, d
    return best


class ScriptedExpert:
    """``ScriptedExpert(env).act(obs, task)`` -> absolute action (position, euler, gripper)."""

    def __init__(self, env):
        if getattr(env, "backend", "embedded") != "embedded":
            raise ValueError("ScriptedExpert knows the embedded play table's geometry only; "
                             f"it cannot drive the {env.backend!r} backend")
        self.env = env
        self._task: str | None = None
        self._episode_marker: tuple | None = None
        self._plan: list[Waypoint] = []
        self._index = 0
        self._steps_here = 0
        self._settled = 0
        self._command: np.ndarray | None = None
        self._yaw = NEUTRAL_YAW

    def reset(self) -> None:
        """Forget the current plan (the next ``act`` plans afresh)."""
        self._task = None

    # ------------------------------------------------------------------------------------ acting
    def act(self, obs: dict, task: str):
        check_task_names([task])
        view = View.from_obs(obs)
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

    def _follow(self, view: View):
        if self._index >= len(self._plan):
            last = self._plan[-1] if self._plan else Waypoint(_fixed(view.tcp), self._yaw, OPEN)
            return self._action(self._command, self._yaw, last.gripper)
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
        self._steps_here += 1
        reached = (np.linalg.norm(target - view.tcp) < waypoint.tolerance
                   and abs(waypoint.yaw - self._yaw) < 1e-6)
        if reached:
            self._settled += 1
        if (reached and self._settled > waypoint.settle) or self._steps_here > waypoint.timeout:
            self._index += 1
            self._steps_here = 0
            self._settled = 0
        return self._action(self._command, self._yaw, waypoint.gripper)

    @staticmethod
    def _action(position: np.ndarray, yaw: float, gripper: float):
        return (np.asarray(position, dtype=float).copy(), np.array([math.pi, 0.0, yaw]), float(gripper))

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
        if view.tcp[1] > -0.03:
            if view.tcp[2] < CABINET_CLEAR_HEIGHT - 0.01:
                up = np.array([view.tcp[0], view.tcp[1], CABINET_CLEAR_HEIGHT])
                waypoints.append(Waypoint(_fixed(up), self._yaw, gripper, speed=SLOW, tolerance=0.02, timeout=45))
            if not (task.endswith("_slider") or task.startswith("move_slider")):
                # Out in front of the cabinet at that height, so that no straight move towards the desk
                # passes through the door.
                out = np.array([view.tcp[0], -0.08, CABINET_CLEAR_HEIGHT])
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

    def _rise(self, view: View, yaw: float, gripper: float, height: float = SAFE_HEIGHT) -> Waypoint:
        return Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], max(height, v.tcp[2])]), yaw, gripper,
                        tolerance=0.03, timeout=40)

    def _grasp(self, view: View, name: str, yaw_centre: float = NEUTRAL_YAW) -> tuple[list[Waypoint], float]:
        """Waypoints that end with ``name`` between closed fingers; returns them and the hand yaw."""
        position, block_yaw = view.blocks[name]
        yaw = grasp_yaw(name, block_yaw, yaw_centre)
        support = _support_top(position, name)
        z_grasp = grasp_height(name, support)
        if position[1] > sc.SHELF_Y[0] - 0.02:  # on the shelf: come down from above the door's height
            hover = CABINET_CLEAR_HEIGHT
        else:
            hover = max(position[2] + 0.10, SAFE_HEIGHT if support < -0.02 else 0.12)

        def above(v: View) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0], p[1], hover])

        def at(v: View) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0], p[1], z_grasp])

        high = SAFE_HEIGHT if view.tcp[2] < SAFE_HEIGHT - 0.05 else view.tcp[2]
        return [
            self._rise(view, self._yaw, OPEN, height=high),
            Waypoint(above, yaw, OPEN, tolerance=0.012, timeout=80),
            Waypoint(at, yaw, OPEN, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(at, yaw, CLOSE, speed=SLOW, tolerance=0.02, settle=10, timeout=20),
        ], yaw

    def _lift(self, view: View, name: str) -> list[Waypoint]:
        position = view.blocks[name][0]
        clear_door = self._clear_door_for(view, position[0]) if position[1] > sc.SHELF_Y[0] - 0.02 else []
        waypoints, yaw = self._grasp(view, name)
        waypoints = clear_door + waypoints
        z = view.blocks[name][0][2] + 0.14
        return waypoints + [Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], z]), yaw, CLOSE, speed=SLOW,
                                     tolerance=0.01, timeout=60)]

    def _rotate(self, view: View, name: str, direction: int) -> list[Waypoint]:
        turn = direction * math.radians(85)
        waypoints, yaw = self._grasp(view, name, yaw_centre=NEUTRAL_YAW - turn / 2)
        position = view.blocks[name][0]
        z_grasp = grasp_height(name, _support_top(position, name))
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
        start_offset = _footprint_half_x(name, block_yaw) + 0.025
        z = max(0.018, min(position[2], 0.022))
        yaw = NEUTRAL_YAW  # hand long along the push: it stays clear of the neighbours
        x_end = position[0] + direction * 0.16

        def behind(v: View, height: float) -> np.ndarray:
            p = v.blocks[name][0]
            return np.array([p[0] - direction * start_offset, p[1], height])

        def ahead(v: View) -> np.ndarray:
            # Closed loop on the block's y: pushing through its centre keeps it from spinning away.
            return np.array([x_end, v.blocks[name][0][1], z])

        return [
            self._rise(view, self._yaw, CLOSE, height=0.12),
            Waypoint(lambda v: behind(v, 0.10), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(lambda v: behind(v, z), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(ahead, yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=90),
            self._rise(view, yaw, CLOSE, height=0.12),
        ]

    @staticmethod
    def _door_span(door: float) -> tuple[float, float]:
        centre = sc.DOOR_WIDTH / 2 - door
        return centre - sc.DOOR_WIDTH / 2, centre + sc.DOOR_WIDTH / 2

    def _door_blocks_reach(self, door: float, x: float) -> bool:
        """Whether the door stands where the forearm crosses the door's plane on its way to a hand low
        on the shelf at ``x`` (the arm comes from the base at x = 0, so it crosses at about 0.85 x)."""
        if sc.DOOR_KNOB_Z[1] < 0.19:  # a low door: the forearm crosses above it (measured ~0.19 m+)
            return False
        low, high = self._door_span(door)
        crossing = 0.85 * x
        return low - 0.05 < crossing < high + 0.05

    def _clear_door_for(self, view: View, x: float) -> list[Waypoint]:
        """Push the door out of the way of a reach to the shelf at ``x``, if it is in the way (a
        previous "move slider" may have left it half-way: the oracle is satisfied after 15 cm)."""
        if not self._door_blocks_reach(view.door, x):
            return []
        direction = -1 if x > 0 else +1  # door to the left (joint up) for a block on the right
        return self._slide_door(view, direction, full=True)

    def _slide_door(self, view: View, direction: int, full: bool = False) -> list[Waypoint]:
        """Push the door's knob sideways; ``direction`` -1 moves the door left (joint value up)."""
        knob_x = sc.DOOR_WIDTH / 2 - view.door
        z = sc.DOOR_KNOB_Z[1] - 0.02  # fingertips well below the knob's top, hand above it
        y = sum(sc.DOOR_KNOB_Y) / 2
        side = -direction  # start on the side the door moves away from
        start_x = knob_x + side * (0.015 + 0.022)
        travel = 0.22
        if full:  # all the way to the joint limit (the knob ends 0.17 m from the middle)
            travel = abs(direction * sc.DOOR_WIDTH / 2 - knob_x) + 0.01
        end_x = float(np.clip(start_x + direction * travel, -0.21, 0.21))
        yaw = NEUTRAL_YAW  # hand long along x: it stays out of the door panel
        return [
            self._rise(view, self._yaw, CLOSE, height=SAFE_HEIGHT),
            Waypoint(_fixed([start_x, y, z + 0.08]), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(_fixed([start_x, y, z]), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(_fixed([end_x, y, z]), yaw, CLOSE, speed=PUSH, tolerance=0.012, timeout=90),
            Waypoint(_fixed([end_x, y, CABINET_CLEAR_HEIGHT]), yaw, CLOSE, speed=SLOW, tolerance=0.02, timeout=40),
        ]

    def _drawer(self, view: View, opening: bool) -> list[Waypoint]:
        handle_y = sc.DRAWER_HANDLE_Y - view.drawer
        z = sum(sc.DRAWER_HANDLE_Z) / 2
        x = sc.DRAWER_HANDLE_X
        end_y = sc.DRAWER_HANDLE_Y - (0.19 if opening else 0.0) + (0.0 if opening else 0.006)
        yaw = NEUTRAL_YAW  # fingers close along x around the vertical handle bar
        return [
            self._rise(view, self._yaw, OPEN, height=0.10),
            Waypoint(_fixed([x, handle_y, 0.06]), yaw, OPEN, tolerance=0.012, timeout=80),
            Waypoint(_fixed([x, handle_y, z]), yaw, OPEN, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(_fixed([x, handle_y, z]), yaw, CLOSE, speed=SLOW, tolerance=0.02, settle=8, timeout=20),
            Waypoint(_fixed([x, end_y, z]), yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=90),
            Waypoint(_fixed([x, end_y, z]), yaw, OPEN, speed=SLOW, tolerance=0.03, settle=6, timeout=15),
            Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1] - 0.03, 0.10]), yaw, OPEN, tolerance=0.03,
                     timeout=40),
        ]

    def _yaw_along_x(self) -> float:
        """The hand yaw nearest the current one with the hand's long side along x: the only way it fits
        into the shelf (between its front and back) and into the drawer."""
        return min((NEUTRAL_YAW + k * math.pi for k in (-1, 0, 1)), key=lambda y: abs(y - self._yaw))

    def _place_in_slider(self, view: View) -> list[Waypoint]:
        drop = self._slider_drop(view)
        clear_door = self._clear_door_for(view, drop[0])
        # Carried high: the block hanging below the hand must clear the door (0.29 m with its knob).
        return clear_door + self._place(view, drop, yaw=self._yaw_along_x(), carry_height=CABINET_CLEAR_HEIGHT)

    def _slider_drop(self, view: View) -> np.ndarray:
        """A free spot on the shelf: the compartment the door leaves open if nothing stands there,
        else the free spot farthest from the blocks already on the shelf (the shelf is open at the
        top, so a hand coming from above reaches behind the door too)."""
        held = held_block(view)
        on_shelf = [p[0] for n, (p, _) in view.blocks.items()
                    if n != held and sc.SHELF_Y[0] < p[1] < sc.SHELF_Y[1] and p[2] > sc.SHELF_TOP]
        open_slot = sc.SLIDER_LEFT_SLOT if view.door < sc.SLIDER_IS_LEFT_ABOVE else sc.SLIDER_RIGHT_SLOT
        candidates = [open_slot[0], -open_slot[0], 0.0]

        def clearance(x: float) -> float:
            return min((abs(x - other) for other in on_shelf), default=1.0)

        free = [c for c in candidates if clearance(c) > 0.11]
        reachable = [c for c in free if not self._door_blocks_reach(view.door, c)]
        x = (reachable or free or [max(candidates, key=clearance)])[0]
        return np.array([x, open_slot[1], sc.SHELF_TOP])

    def _drawer_drop(self) -> Callable[[View], np.ndarray]:
        """Where to let go of a block over the open drawer: the back of its exposed part (the hand just
        clears the desk's edge), or its front when a block already lies at the back, so that two fit."""
        def drop(v: View) -> np.ndarray:
            opening = max(v.drawer, 0.12)
            front, back = sc.DRAWER_Y[0] - opening + 0.045, sc.DRAWER_Y[0] - 0.05
            inside = [p[1] for p, _ in v.blocks.values() if p[2] < -0.05 and np.linalg.norm(p - v.tcp) > 0.04]
            candidates = [back, front, (front + back) / 2]
            y = next((c for c in candidates if min((abs(c - o) for o in inside), default=1.0) > 0.08),
                     (front + back) / 2)
            return np.array([sc.DRAWER_SLOT_X, y, sc.DRAWER_BOTTOM + 0.01])

        return drop

    def _place(self, view: View, surface, name: str | None = None, yaw: float | None = None,
               release_gap: float = 0.012, carry_height: float = SAFE_HEIGHT) -> list[Waypoint]:
        """Carry the held block over ``surface`` (point or function of the view: x, y, surface top)
        and let go just above it."""
        name = name or held_block(view) or sc.BLOCK_NAMES[0]
        surface_at = surface if callable(surface) else _fixed(surface)
        offset = view.tcp[2] - view.blocks[name][0][2]  # TCP above block centre while held
        half = sc.BLOCK_SIZES[name][2] / 2
        yaw = self._yaw if yaw is None else yaw

        def over(v: View) -> np.ndarray:
            s = surface_at(v)
            return np.array([s[0], s[1], max(carry_height, s[2] + 0.15)])

        def release(v: View) -> np.ndarray:
            s = surface_at(v)
            return np.array([s[0], s[1], s[2] + half + release_gap + offset])

        return [
            self._rise(view, yaw, CLOSE, height=carry_height),
            Waypoint(over, yaw, CLOSE, tolerance=0.015, timeout=90),
            Waypoint(release, yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(release, yaw, OPEN, speed=SLOW, tolerance=0.03, settle=10, timeout=20),
            self._rise(view, yaw, OPEN, height=SAFE_HEIGHT),
        ]

    def _into_drawer(self, view: View) -> list[Waypoint]:
        # Which block: the one on the table (the others are on the shelf by the task's precondition).
        name = min(view.blocks, key=lambda n: abs(view.blocks[n][0][2] - sc.BLOCK_SIZES[n][2] / 2)
                   + (0.0 if view.blocks[n][0][1] < sc.SHELF_Y[0] else 1.0))
        waypoints, yaw = self._grasp(view, name)
        offset = grasp_height(name, 0.0) - sc.BLOCK_SIZES[name][2] / 2
        drop = self._drawer_drop()

        def over(v: View) -> np.ndarray:
            s = drop(v)
            return np.array([s[0], s[1], SAFE_HEIGHT])

        def release(v: View) -> np.ndarray:
            s = drop(v)
            return np.array([s[0], s[1], s[2] + sc.BLOCK_SIZES[name][2] / 2 + 0.015 + offset])

        carry = min((NEUTRAL_YAW + k * math.pi for k in (-1, 0, 1)), key=lambda y: abs(y - yaw))
        return waypoints + [
            self._rise(view, yaw, CLOSE, height=SAFE_HEIGHT),
            Waypoint(over, carry, CLOSE, tolerance=0.015, timeout=90),
            Waypoint(release, carry, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(release, carry, OPEN, speed=SLOW, tolerance=0.03, settle=10, timeout=20),
            self._rise(view, carry, OPEN, height=SAFE_HEIGHT),
        ]

    def _stack(self, view: View) -> list[Waypoint]:
        top = held_block(view) or sc.BLOCK_NAMES[0]
        candidates = [n for n in view.blocks if n != top and -0.2 < view.blocks[n][0][1] < sc.SHELF_Y[0]
                      and view.blocks[n][0][2] < 0.06]
        bottom = candidates[0] if candidates else [n for n in view.blocks if n != top][0]

        def surface(v: View) -> np.ndarray:
            p = v.blocks[bottom][0]
            return np.array([p[0], p[1], p[2] + sc.BLOCK_SIZES[bottom][2] / 2])

        bottom_yaw = view.blocks[bottom][1]
        yaw = grasp_yaw(top, bottom_yaw, self._yaw) if top != "block_red" else self._yaw
        return self._place(view, surface, name=top, yaw=yaw, release_gap=0.008)

    def _unstack(self, view: View) -> list[Waypoint]:
        # The top block: the higher of a pair standing one above the other.
        pairs = [(a, b) for a in view.blocks for b in view.blocks if a != b
                 and np.linalg.norm(view.blocks[a][0][:2] - view.blocks[b][0][:2]) < 0.04
                 and view.blocks[a][0][2] > view.blocks[b][0][2]]
        top = pairs[0][0] if pairs else max(view.blocks, key=lambda n: view.blocks[n][0][2])
        waypoints, yaw = self._grasp(view, top)
        position = view.blocks[top][0]
        side = -1.0 if position[0] > 0 else 1.0
        target = np.array([position[0] + side * 0.13, float(np.clip(position[1], -0.12, -0.05)), 0.0])
        lift = Waypoint(lambda v: np.array([v.tcp[0], v.tcp[1], position[2] + 0.08]), yaw, CLOSE, speed=SLOW,
                        tolerance=0.012, timeout=40)
        rest = self._place(view, target, name=top, yaw=yaw)
        # Use the known holding offset (the plan is built before the grasp happens).
        offset = grasp_height(top, 0.0) - sc.BLOCK_SIZES[top][2] / 2
        half = sc.BLOCK_SIZES[top][2] / 2
        rest[2] = Waypoint(_fixed(target + [0, 0, half + 0.012 + offset]), yaw, CLOSE, speed=SLOW,
                           tolerance=0.008, timeout=60)
        rest[3] = Waypoint(_fixed(target + [0, 0, half + 0.012 + offset]), yaw, OPEN, speed=SLOW,
                           tolerance=0.03, settle=10, timeout=20)
        return waypoints + [lift] + rest[1:]

    def _press_button(self, view: View) -> list[Waypoint]:
        x, y = sc.BUTTON_XY
        pressed_z = sc.BUTTON_TOP + sc.BUTTON_RANGE[0] + FINGERTIP_BELOW_TCP - 0.004
        yaw = NEUTRAL_YAW
        return [
            self._rise(view, self._yaw, CLOSE, height=0.15),
            Waypoint(_fixed([x, y, 0.12]), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(_fixed([x, y, pressed_z]), yaw, CLOSE, speed=SLOW, tolerance=0.006, settle=3, timeout=45),
            Waypoint(_fixed([x, y, 0.12]), yaw, CLOSE, speed=SLOW, tolerance=0.015, timeout=40),
        ]

    def _push_switch(self, view: View, direction: int) -> list[Waypoint]:
        knob_x = sc.SWITCH_X0 + view.switch
        z = 0.03
        y = sc.SWITCH_Y
        start_x = knob_x - direction * (sc.SWITCH_SIZE[0] / 2 + 0.025)
        end_x = sc.SWITCH_X0 + (sc.SWITCH_RANGE[1] if direction > 0 else 0.0) - direction * (
            sc.SWITCH_SIZE[0] / 2 + 0.008)
        yaw = 0.0  # hand long along y: it passes the knob without touching the desk objects
        return [
            self._rise(view, self._yaw, CLOSE, height=0.15),
            Waypoint(_fixed([start_x, y, 0.12]), yaw, CLOSE, tolerance=0.012, timeout=80),
            Waypoint(_fixed([start_x, y, z]), yaw, CLOSE, speed=SLOW, tolerance=0.008, timeout=60),
            Waypoint(_fixed([end_x, y, z]), yaw, CLOSE, speed=PUSH, tolerance=0.01, timeout=60),
            self._rise(view, yaw, CLOSE, height=0.15),
        ]


def expert_policy(env) -> Callable[[dict, str], object]:
    """The expert as a ``policy(obs, instruction)`` for ``evaluate_chains`` (instructions from
    ``openhelix_ros.sim.language`` map back to their task)."""
    from openhelix_ros.sim.language import task_for_instruction

    expert = ScriptedExpert(env)
    return lambda obs, instruction: expert.act(obs, task_for_instruction(instruction))
