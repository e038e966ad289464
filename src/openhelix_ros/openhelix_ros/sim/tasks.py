"""The task oracle: CALVIN's 34 task names and their success rules.

A task is a change between two ``info`` dicts (``env.get_info()`` at subtask start and now). The
rules follow the ones in CALVIN's public ``calvin_env`` (read, not copied), with the same thresholds:
rotate > 60 deg about z with < 30 deg about x/y and < 0.1 m travel, push > 0.1 m along x with a
supporting surface at start and end, slider 0.15 m, drawer 0.12 m, lift > 0.05 m (0.03 m from the
slider shelf) with the robot the only contact, place/stack/unstack by contact changes, lights by their
logical state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
from scipy.spatial.transform import Rotation

COLOURS = ("red", "blue", "pink")
BLOCKS = tuple(f"block_{c}" for c in COLOURS)


def _contacts(info: dict, name: str) -> list:
    return info["scene_info"]["movable_objects"][name]["contacts"]


def _robot_uid(info: dict) -> int:
    return info["robot_info"]["uid"]


def _link(info: dict, body: str, link: str) -> tuple[int, int]:
    fixed = info["scene_info"]["fixed_objects"][body]
    return fixed["uid"], fixed["links"][link]


def rotate_object(obj_name: str, z_degrees: float, start_info: dict, end_info: dict,
                  x_y_threshold: float = 30.0, z_threshold: float = 180.0,
                  movement_threshold: float = 0.1) -> bool:
    start = start_info["scene_info"]["movable_objects"][obj_name]
    end = end_info["scene_info"]["movable_objects"][obj_name]
    relative = Rotation.from_quat(end["current_orn"]) * Rotation.from_quat(start["current_orn"]).inv()
    x, y, z = relative.as_euler("xyz", degrees=True)
    if np.linalg.norm(np.subtract(end["current_pos"], start["current_pos"])) > movement_threshold:
        return False
    # It must rest on something other than the robot at the end (rotated and put down, not held).
    if not {c[2] for c in end["contacts"]} - {_robot_uid(start_info)}:
        return False
    tilt_ok = abs(x) < x_y_threshold and abs(y) < x_y_threshold
    if z_degrees > 0:
        return tilt_ok and z_degrees < z < z_threshold
    return tilt_ok and -z_threshold < z < z_degrees


def push_object(obj_name: str, x_direction: float, start_info: dict, end_info: dict) -> bool:
    start = start_info["scene_info"]["movable_objects"][obj_name]
    end = end_info["scene_info"]["movable_objects"][obj_name]
    robot = _robot_uid(start_info)
    start_support = {(c[2], c[4]) for c in start["contacts"] if c[2] != robot}
    end_support = {(c[2], c[4]) for c in end["contacts"] if c[2] != robot}
    # Pushed means slid: a supporting surface at both ends, the start one still among the end ones.
    if not start_support or not end_support or not start_support <= end_support:
        return False
    dx = end["current_pos"][0] - start["current_pos"][0]
    return dx > x_direction if x_direction > 0 else dx < x_direction


def lift_object(obj_name: str, z_direction: float, surface_body: str, surface_link: str,
                start_info: dict, end_info: dict) -> bool:
    start = start_info["scene_info"]["movable_objects"][obj_name]
    end = end_info["scene_info"]["movable_objects"][obj_name]
    dz = end["current_pos"][2] - start["current_pos"][2]
    end_bodies = {c[2] for c in end["contacts"]}
    started_on_surface = _link(start_info, surface_body, surface_link) in {(c[2], c[4]) for c in start["contacts"]}
    return dz > z_direction and end_bodies == {_robot_uid(start_info)} and started_on_surface


def place_object(dest_body: str, dest_link: str, start_info: dict, end_info: dict) -> bool:
    robot = _robot_uid(start_info)
    held = {c[2] for c in start_info["robot_info"]["contacts"]}
    if len(held) != 1:
        return False
    (held_uid,) = held
    if held_uid in {c[2] for c in end_info["robot_info"]["contacts"]}:
        return False  # the robot must have let go
    names = [n for n, v in start_info["scene_info"]["movable_objects"].items() if v["uid"] == held_uid]
    if len(names) != 1:
        return False
    start_bodies = {c[2] for c in _contacts(start_info, names[0])}
    end_links = {(c[2], c[4]) for c in _contacts(end_info, names[0])}
    return start_bodies == {robot} and _link(end_info, dest_body, dest_link) in end_links


def push_object_into(obj_names: Iterable[str], src_body: str, src_link: str, dest_body: str,
                     dest_link: str, start_info: dict, end_info: dict) -> bool:
    robot = _robot_uid(start_info)
    source, destination = _link(start_info, src_body, src_link), _link(end_info, dest_body, dest_link)
    for name in obj_names:
        start = {(c[2], c[4]) for c in _contacts(start_info, name)}
        end = {(c[2], c[4]) for c in _contacts(end_info, name)}
        bodies = {c[0] for c in start | end}
        if robot not in bodies and len(start) == 1 and source in start and destination in end:
            return True
    return False


def move_door_rel(joint_name: str, threshold: float, start_info: dict, end_info: dict) -> bool:
    delta = (end_info["scene_info"]["doors"][joint_name]["current_state"]
             - start_info["scene_info"]["doors"][joint_name]["current_state"])
    return 0 < threshold < delta or 0 > threshold > delta


def toggle_light(light_name: str, start_state: int, end_state: int, start_info: dict, end_info: dict) -> bool:
    return (start_info["scene_info"]["lights"][light_name]["logical_state"] == start_state
            and end_info["scene_info"]["lights"][light_name]["logical_state"] == end_state)


def _block_uids(info: dict) -> set[int]:
    return {v["uid"] for v in info["scene_info"]["movable_objects"].values()}


def stack_objects(start_info: dict, end_info: dict, max_vel: float = 1.0) -> bool:
    blocks = _block_uids(start_info)
    for name in start_info["scene_info"]["movable_objects"]:
        start = {c[2] for c in _contacts(start_info, name)}
        end_obj = end_info["scene_info"]["movable_objects"][name]
        end = {c[2] for c in end_obj["contacts"]}
        # Not touching a block before, resting on blocks only (robot gone, no table) after.
        if not blocks & start and blocks & end and not end - blocks:
            if (np.all(np.abs(end_obj["current_lin_vel"]) < max_vel)
                    and np.all(np.abs(end_obj["current_ang_vel"]) < max_vel)):
                return True
    return False


def unstack_objects(start_info: dict, end_info: dict, max_vel: float = 1.0) -> bool:
    blocks = _block_uids(start_info)
    for name in start_info["scene_info"]["movable_objects"]:
        start_obj = start_info["scene_info"]["movable_objects"][name]
        start = {c[2] for c in start_obj["contacts"]}
        end = {c[2] for c in _contacts(end_info, name)}
        # Resting on blocks only before, touching no block after.
        if blocks & start and not start - blocks and not blocks & end:
            if (np.all(np.abs(start_obj["current_lin_vel"]) < max_vel)
                    and np.all(np.abs(start_obj["current_ang_vel"]) < max_vel)):
                return True
    return False


def _task_table() -> dict[str, Callable[..., bool]]:
    table: dict[str, Callable[..., bool]] = {}
    for colour in COLOURS:
        block = f"block_{colour}"
        table[f"rotate_{colour}_block_right"] = partial(rotate_object, block, -60.0)
        table[f"rotate_{colour}_block_left"] = partial(rotate_object, block, 60.0)
    for colour in COLOURS:
        block = f"block_{colour}"
        table[f"push_{colour}_block_right"] = partial(push_object, block, 0.1)
        table[f"push_{colour}_block_left"] = partial(push_object, block, -0.1)
    table["move_slider_left"] = partial(move_door_rel, "base__slide", 0.15)
    table["move_slider_right"] = partial(move_door_rel, "base__slide", -0.15)
    table["open_drawer"] = partial(move_door_rel, "base__drawer", 0.12)
    table["close_drawer"] = partial(move_door_rel, "base__drawer", -0.12)
    for colour in COLOURS:
        block = f"block_{colour}"
        table[f"lift_{colour}_block_table"] = partial(lift_object, block, 0.05, "table", "base_link")
        table[f"lift_{colour}_block_slider"] = partial(lift_object, block, 0.03, "table", "plank_link")
        table[f"lift_{colour}_block_drawer"] = partial(lift_object, block, 0.05, "table", "drawer_link")
    table["place_in_slider"] = partial(place_object, "table", "plank_link")
    table["place_in_drawer"] = partial(place_object, "table", "drawer_link")
    table["push_into_drawer"] = partial(push_object_into, BLOCKS, "table", "base_link", "table", "drawer_link")
    table["stack_block"] = stack_objects
    table["unstack_block"] = unstack_objects
    table["turn_on_lightbulb"] = partial(toggle_light, "lightbulb", 0, 1)
    table["turn_off_lightbulb"] = partial(toggle_light, "lightbulb", 1, 0)
    table["turn_on_led"] = partial(toggle_light, "led", 0, 1)
    table["turn_off_led"] = partial(toggle_light, "led", 1, 0)
    return table


_RULES = _task_table()
TASKS: tuple[str, ...] = tuple(_RULES)
assert len(TASKS) == 34


def check_task_names(names: Iterable[str]) -> None:
    """Raise ValueError naming every unknown task in ``names``."""
    if isinstance(names, str):
        names = [names]
    unknown = sorted(set(names) - set(_RULES))
    if unknown:
        raise ValueError(f"unknown task name(s) {unknown}; known tasks are the 34 CALVIN names "
                         f"(openhelix_ros.sim.TASKS)")


class TaskOracle:
    """Decides which tasks were completed between two ``env.get_info()`` dicts (CALVIN's ``Tasks``)."""

    def __init__(self, names: Iterable[str] = TASKS):
        names = list(names)
        check_task_names(names)
        self.tasks = {name: _RULES[name] for name in names}
        self.task_to_id = {name: i for i, name in enumerate(self.tasks)}
        self.id_to_task = dict(enumerate(self.tasks))

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def get_task_info(self, start_info: dict, end_info: dict) -> set[str]:
        """All tasks completed between ``start_info`` and ``end_info``."""
        return {name for name, rule in self.tasks.items() if rule(start_info=start_info, end_info=end_info)}

    def get_task_info_for_set(self, start_info: dict, end_info: dict, task_filter: Iterable[str]) -> set[str]:
        """The tasks of ``task_filter`` completed between the two infos; unknown names raise ValueError."""
        task_filter = {task_filter} if isinstance(task_filter, str) else set(task_filter)
        check_task_names(task_filter)
        return {name for name in task_filter
                if name in self.tasks and self.tasks[name](start_info=start_info, end_info=end_info)}
