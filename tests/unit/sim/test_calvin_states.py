"""CALVIN's start states (sim/calvin_states.py), as its evaluation builds them, without calvin_models."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.sim.calvin_states import (
    BLOCK_ON_SLIDER_LEFT,
    BLOCK_ON_SLIDER_RIGHT,
    BLOCKS_ON_TABLE,
    CALVIN_START_ROBOT_OBS,
    calvin_state_for_condition,
    condition_seed,
    fnv1_32,
)
from openhelix_ros.sim.protocol import initial_conditions


def test_fnv1_32_matches_the_published_test_vectors():
    # From the FNV reference (Fowler/Noll/Vo): FNV-1, not FNV-1a (which gives 0xe40c292c for "a").
    assert fnv1_32(b"") == 0x811C9DC5
    assert fnv1_32(b"a") == 0x050C5D7E
    assert fnv1_32(b"foobar") == 0x31F0B262


def test_the_seed_is_the_hash_of_the_values_text_in_calvins_key_order():
    condition = initial_conditions()[0]
    assert list(condition) == ["led", "lightbulb", "slider", "drawer", "red_block", "blue_block", "pink_block",
                               "grasped"]
    assert condition_seed(condition) == fnv1_32(str(condition.values()).encode())
    assert str(condition.values()).startswith("dict_values([0, 0, 'right', 'closed', ")


def test_states_follow_calvins_rules_for_every_condition():
    spots = {tuple(np.round(spot, 6)) for spot in BLOCKS_ON_TABLE}
    for condition in initial_conditions():
        robot_obs, scene_obs = calvin_state_for_condition(condition)
        assert robot_obs.tolist() == list(CALVIN_START_ROBOT_OBS)
        assert scene_obs[0] == (0.28 if condition["slider"] == "left" else 0.0)
        assert scene_obs[1] == (0.22 if condition["drawer"] == "open" else 0.0)
        assert scene_obs[3] == (0.088 if condition["lightbulb"] else 0.0)
        assert scene_obs[4] == condition["lightbulb"] and scene_obs[5] == condition["led"]
        on_table = []
        for name, offset in (("red_block", 6), ("blue_block", 12), ("pink_block", 18)):
            position = tuple(scene_obs[offset:offset + 3])
            place = condition[name]
            if place == "slider_left":
                assert position == BLOCK_ON_SLIDER_LEFT
            elif place == "slider_right":
                assert position == BLOCK_ON_SLIDER_RIGHT
            else:
                assert tuple(np.round(position, 6)) in spots
                on_table.append(tuple(np.round(position, 6)))
            assert np.pi / 2 - np.pi / 8 <= scene_obs[offset + 5] <= np.pi / 2 + np.pi / 8
        assert len(set(on_table)) == len(on_table)  # two blocks on the table never share a spot
        again = calvin_state_for_condition(dict(condition))
        np.testing.assert_array_equal(again[1], scene_obs)  # the same condition, the same state


def test_the_callers_global_rng_is_left_alone_and_a_short_condition_is_refused():
    np.random.seed(7)
    expected = np.random.uniform()
    np.random.seed(7)
    calvin_state_for_condition(initial_conditions()[3])
    assert np.random.uniform() == expected
    with pytest.raises(ValueError, match="lacks pink_block"):
        calvin_state_for_condition({"led": 0, "lightbulb": 0, "slider": "left", "drawer": "open",
                                    "red_block": "table", "blue_block": "table"})
