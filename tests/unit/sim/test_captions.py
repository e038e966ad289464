"""Captions of the play table read from the simulator's state (openhelix_ros.sim.captions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.captions import caption, scene_facts, write_captioned_scenes
from openhelix_ros.sim.protocol import state_for_condition

BASE = {"led": 1, "lightbulb": 0, "slider": "left", "drawer": "open", "red_block": "drawer",
        "blue_block": "table", "pink_block": "slider_right", "grasped": 0}


def _facts(env, condition, edit=None, tcp=None):
    robot_obs, scene_obs = state_for_condition(condition, np.random.default_rng(0))
    if edit is not None:
        edit(scene_obs)
    if tcp is not None:
        robot_obs = env.robot_obs_for_tcp(np.array(tcp))
    env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    return {f.key: f for f in scene_facts(env)}


def test_facts_follow_the_state(env):
    facts = _facts(env, BASE)
    assert facts["door"].answer == "left" and facts["drawer"].answer == "open"
    assert facts["led"].answer == "on" and facts["lightbulb"].answer == "off"
    assert facts["block_red.place"].answer == "drawer"
    assert facts["block_pink.place"].answer == "right cabinet"  # the door covers the left half
    assert facts["block_blue.place"].answer == "table"
    assert facts["gripper"].answer == "open"
    text = caption(list(facts.values()))
    assert "the drawer is open" in text and "the red block is in the drawer" in text
    assert text.endswith(".") and text.count(";") == sum(1 for f in facts.values() if f.clause) - 1
    for fact in facts.values():
        assert fact.answer in fact.choices


def test_a_block_behind_the_door_is_not_visible(env):
    facts = _facts(env, BASE | {"slider": "right"})  # door value 0: it covers the right half
    assert facts["door"].answer == "right"
    assert facts["block_pink.place"].answer == "hidden"
    assert facts["block_pink.place"].clause == "the pink block is not visible"


def test_what_the_arm_hides_is_not_stated(env):
    assert "led" in _facts(env, BASE, tcp=(0.05, -0.30, 0.40))
    facts = _facts(env, BASE, tcp=(0.05, -0.35, 0.30))  # the arm between the camera and the LED
    assert "led" not in facts and "the green light" not in caption(list(facts.values()))
    assert facts["lightbulb"].answer == "off"  # the rest is still said


def test_table_regions_and_left_of_come_from_the_positions(env):
    condition = BASE | {"red_block": "table", "pink_block": "table"}
    red, blue, pink = (6 + 6 * sc.BLOCK_NAMES.index(n) for n in sc.BLOCK_NAMES)

    def place(scene_obs):  # at different depths, so that the camera's slant is in the picture
        scene_obs[red], scene_obs[blue], scene_obs[pink] = -0.18, 0.18, 0.0
        scene_obs[red + 1], scene_obs[blue + 1], scene_obs[pink + 1] = -0.13, -0.08, -0.11

    facts = _facts(env, condition, place)
    assert facts["block_red.region"].answer == "left" and facts["block_blue.region"].answer == "right"
    assert facts["block_pink.region"].answer == "middle"
    assert facts["block_red.place"].clause == "the red block is on the left of the table"
    assert facts["block_red.region"].clause == ""  # the place clause says it
    assert facts["block_red.left_of.block_blue"].answer == "left"
    assert facts["block_blue.left_of.block_pink"].answer == "right"


def test_a_state_at_a_threshold_states_nothing(env):
    def halfway(scene_obs):
        scene_obs[0] = sc.SLIDER_IS_LEFT_ABOVE
        scene_obs[1] = sc.DRAWER_IS_OPEN_ABOVE

    facts = _facts(env, BASE | {"red_block": "table"}, halfway)
    assert "door" not in facts and "drawer" not in facts


def test_scene_sets_resume_to_the_same_scenes_and_refuse_another_set(tmp_path):
    first = write_captioned_scenes(tmp_path / "a", 5, seed=3, shard_size=2)
    assert sorted(p.name for p in first.glob("images-*.npy")) == ["images-0000.npy", "images-0001.npy",
                                                                   "images-0002.npy"]
    images = np.load(first / "images-0001.npy")
    records = (first / "facts-0001.jsonl").read_text()
    assert images.shape == (2, 200, 200, 3) and images.dtype == np.uint8 and images.std() > 10
    (first / "images-0001.npy").unlink()  # as if interrupted in that shard
    write_captioned_scenes(first, 5, seed=3, shard_size=2)
    assert np.array_equal(np.load(first / "images-0001.npy"), images)
    assert (first / "facts-0001.jsonl").read_text() == records
    rows = [json.loads(line) for line in records.splitlines()]
    assert [r["index"] for r in rows] == [2, 3] and all(r["caption"].endswith(".") for r in rows)
    with pytest.raises(ValueError, match="another scene set"):
        write_captioned_scenes(first, 6, seed=3, shard_size=2)
