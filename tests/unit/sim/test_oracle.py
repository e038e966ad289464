"""Each success rule of the 34-task oracle, both ways (success and a near miss), by driving the
simulator's state directly (block poses, joint positions) and comparing ``get_info`` dicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.scenes import base_scene, holding, info_for, set_block, table_z

from openhelix_ros.sim import TASKS
from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.env import DOOR, DRAWER, LED, LIGHTBULB, SWITCH


def completed(env, start, end, task) -> bool:
    return task in env.tasks.get_task_info_for_set(start, end, {task})


def test_the_34_calvin_task_names():
    assert len(TASKS) == 34 and len(set(TASKS)) == 34
    for colour in ("red", "blue", "pink"):
        for stem in ("rotate_{}_block_right", "rotate_{}_block_left", "push_{}_block_right",
                     "push_{}_block_left", "lift_{}_block_table", "lift_{}_block_slider", "lift_{}_block_drawer"):
            assert stem.format(colour) in TASKS
    for name in ("move_slider_left", "move_slider_right", "open_drawer", "close_drawer", "place_in_slider",
                 "place_in_drawer", "push_into_drawer", "stack_block", "unstack_block", "turn_on_lightbulb",
                 "turn_off_lightbulb", "turn_on_led", "turn_off_led"):
        assert name in TASKS


@pytest.mark.parametrize("direction,sign", [("left", 1), ("right", -1)])
def test_rotate_block(env, direction, sign):
    scene = base_scene()
    start = info_for(env, scene)
    turned = info_for(env, set_block(scene, "block_blue", (0.0, -0.10, table_z("block_blue")), sign * math.radians(70)))
    assert completed(env, start, turned, f"rotate_blue_block_{direction}")
    assert not completed(env, start, turned, f"rotate_blue_block_{'right' if direction == 'left' else 'left'}")
    near = info_for(env, set_block(scene, "block_blue", (0.0, -0.10, table_z("block_blue")), sign * math.radians(50)))
    assert not completed(env, start, near, f"rotate_blue_block_{direction}")


@pytest.mark.parametrize("direction,sign", [("right", 1), ("left", -1)])
def test_push_block(env, direction, sign):
    scene = base_scene()
    start = info_for(env, scene)
    pushed = info_for(env, set_block(scene, "block_red", (-0.20 + sign * 0.12, -0.10, table_z("block_red"))))
    assert completed(env, start, pushed, f"push_red_block_{direction}")
    near = info_for(env, set_block(scene, "block_red", (-0.20 + sign * 0.08, -0.10, table_z("block_red"))))
    assert not completed(env, start, near, f"push_red_block_{direction}")
    # Carried through the air instead of slid: no supporting surface at the end.
    lifted = info_for(env, set_block(scene, "block_red", (-0.20 + sign * 0.12, -0.10, 0.2)))
    assert not completed(env, start, lifted, f"push_red_block_{direction}")


@pytest.mark.parametrize("task,index,start_value,success_value,near_value", [
    ("move_slider_left", DOOR, 0.0, 0.20, 0.12),
    ("move_slider_right", DOOR, 0.30, 0.10, 0.18),
    ("open_drawer", DRAWER, 0.0, 0.15, 0.10),
    ("close_drawer", DRAWER, 0.18, 0.03, 0.08),
])
def test_door_and_drawer(env, task, index, start_value, success_value, near_value):
    scene = base_scene()
    scene[index] = start_value
    start = info_for(env, scene)
    scene[index] = success_value
    assert completed(env, start, info_for(env, scene), task)
    scene[index] = near_value
    assert not completed(env, start, info_for(env, scene), task)


def test_lift_from_table(env):
    scene = base_scene()
    start = info_for(env, scene)
    x, y = -0.20, -0.10
    robot_obs, tcp = holding(env, "block_red", (x, y, table_z("block_red") + 0.08))
    end = info_for(env, set_block(scene, "block_red", tcp), robot_obs)
    assert {c[2] for c in end["scene_info"]["movable_objects"]["block_red"]["contacts"]} == {env.robot}
    assert completed(env, start, end, "lift_red_block_table")
    assert not completed(env, start, end, "lift_red_block_slider")
    robot_obs, tcp = holding(env, "block_red", (x, y, table_z("block_red") + 0.04))  # 4 cm: not enough
    assert not completed(env, start, info_for(env, set_block(scene, "block_red", tcp), robot_obs),
                         "lift_red_block_table")
    # Raised but not held (floating): the robot must be its only contact.
    floating = info_for(env, set_block(scene, "block_red", (x, y, 0.2)))
    assert not completed(env, start, floating, "lift_red_block_table")


def test_lift_from_slider_shelf(env):
    slot = (sc.SLIDER_LEFT_SLOT[0], sc.SLIDER_LEFT_SLOT[1], sc.SHELF_TOP + table_z("block_pink"))
    scene = set_block(base_scene(), "block_pink", slot)
    start = info_for(env, scene)
    robot_obs, tcp = holding(env, "block_pink", (slot[0], slot[1], slot[2] + 0.05))
    end = info_for(env, set_block(scene, "block_pink", tcp), robot_obs)
    assert completed(env, start, end, "lift_pink_block_slider")
    assert not completed(env, start, end, "lift_pink_block_table")  # it did not start on the desk top
    robot_obs, tcp = holding(env, "block_pink", (slot[0], slot[1], slot[2] + 0.02))  # 2 cm < 3 cm
    assert not completed(env, start, info_for(env, set_block(scene, "block_pink", tcp), robot_obs),
                         "lift_pink_block_slider")


def test_lift_from_drawer(env):
    scene = base_scene()
    scene[DRAWER] = sc.DRAWER_OPEN_STATE
    in_drawer = (sc.DRAWER_SLOT_X, sc.DRAWER_SLOT_Y - sc.DRAWER_OPEN_STATE,
                 sc.DRAWER_BOTTOM + 0.01 + table_z("block_red"))
    scene = set_block(scene, "block_red", in_drawer, math.pi / 2)
    start = info_for(env, scene)
    robot_obs, tcp = holding(env, "block_red", (in_drawer[0], in_drawer[1], in_drawer[2] + 0.08))
    end = info_for(env, set_block(scene, "block_red", tcp), robot_obs)
    assert completed(env, start, end, "lift_red_block_drawer")
    robot_obs, tcp = holding(env, "block_red", (in_drawer[0], in_drawer[1], in_drawer[2] + 0.03))
    assert not completed(env, start, info_for(env, set_block(scene, "block_red", tcp), robot_obs),
                         "lift_red_block_drawer")


def _held_start(env, scene, name="block_red", xyz=(0.0, -0.05, 0.25)):
    robot_obs, tcp = holding(env, name, xyz)
    return info_for(env, set_block(scene, name, tcp), robot_obs)


@pytest.mark.parametrize("task,target", [
    ("place_in_slider", (sc.SLIDER_LEFT_SLOT[0], sc.SLIDER_LEFT_SLOT[1], sc.SHELF_TOP + table_z("block_red"))),
    ("place_in_drawer", (sc.DRAWER_SLOT_X, sc.DRAWER_SLOT_Y - sc.DRAWER_OPEN_STATE,
                         sc.DRAWER_BOTTOM + 0.01 + table_z("block_red"))),
])
def test_place(env, task, target):
    scene = base_scene()
    scene[DRAWER] = sc.DRAWER_OPEN_STATE
    scene = set_block(scene, "block_blue", (0.20, -0.10, table_z("block_blue")))
    scene = set_block(scene, "block_pink", (-0.05, -0.12, table_z("block_pink")))
    start = _held_start(env, scene)
    assert {c[2] for c in start["robot_info"]["contacts"]} == {env.handles.blocks["block_red"]}
    placed = info_for(env, set_block(scene, "block_red", target, math.pi / 2))
    assert completed(env, start, placed, task)
    on_table = info_for(env, set_block(scene, "block_red", (-0.20, -0.10, table_z("block_red"))))
    assert not completed(env, start, on_table, task)


def test_push_into_drawer(env):
    scene = base_scene()
    scene[DRAWER] = sc.DRAWER_OPEN_STATE
    start = info_for(env, scene)
    in_drawer = (sc.DRAWER_SLOT_X, sc.DRAWER_SLOT_Y - sc.DRAWER_OPEN_STATE,
                 sc.DRAWER_BOTTOM + 0.01 + table_z("block_red"))
    end = info_for(env, set_block(scene, "block_red", in_drawer, math.pi / 2))
    assert completed(env, start, end, "push_into_drawer")
    # Near miss: the block was in the gripper at the start (placed, not pushed).
    assert not completed(env, _held_start(env, scene), end, "push_into_drawer")
    # Near miss: still on the table.
    moved = info_for(env, set_block(scene, "block_red", (-0.10, -0.12, table_z("block_red"))))
    assert not completed(env, start, moved, "push_into_drawer")


def test_stack_and_unstack(env):
    scene = base_scene()
    start = _held_start(env, scene, "block_pink")
    on_blue = (0.0, -0.10, sc.BLOCK_SIZES["block_blue"][2] + table_z("block_pink"))
    stacked = info_for(env, set_block(scene, "block_pink", on_blue))
    assert completed(env, start, stacked, "stack_block")
    # Near miss: on the blue block but still held by the robot.
    robot_obs, tcp = holding(env, "block_pink", on_blue)
    held_on_top = info_for(env, set_block(scene, "block_pink", tcp), robot_obs)
    assert not completed(env, start, held_on_top, "stack_block")

    apart = info_for(env, set_block(scene, "block_pink", (0.20, -0.10, table_z("block_pink"))))
    assert completed(env, stacked, apart, "unstack_block")
    assert not completed(env, stacked, stacked, "unstack_block")  # still on the blue block


@pytest.mark.parametrize("task,index,start_value,end_value", [
    ("turn_on_led", LED, 0, 1), ("turn_off_led", LED, 1, 0),
    ("turn_on_lightbulb", LIGHTBULB, 0, 1), ("turn_off_lightbulb", LIGHTBULB, 1, 0),
])
def test_lights(env, task, index, start_value, end_value):
    def scene_with(light: int) -> np.ndarray:
        scene = base_scene()
        scene[index] = light
        if index == LIGHTBULB:  # the bulb follows the switch; keep the state consistent
            scene[SWITCH] = 0.08 if light else 0.0
        return scene

    start = info_for(env, scene_with(start_value))
    assert completed(env, start, info_for(env, scene_with(end_value)), task)
    assert not completed(env, start, info_for(env, scene_with(start_value)), task)


def test_get_task_info_reports_every_completed_task(env):
    scene = base_scene()
    start = info_for(env, scene)
    scene[DRAWER] = 0.15
    scene[LED] = 1
    end = info_for(env, scene)
    assert env.tasks.get_task_info(start, end) == {"open_drawer", "turn_on_led"}
    assert env.tasks.get_task_info_for_set(start, end, {"open_drawer", "close_drawer"}) == {"open_drawer"}
