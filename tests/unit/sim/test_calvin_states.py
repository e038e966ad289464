"""CALVIN's start states (sim/calvin_states.py), as its evaluation builds them, without calvin_models."""

from __future__ import annotations

import numpy as np
import pytest

from openhelix_ros.sim.calvin_states import (
    BLOCK_ON_SLIDER_LEFT,
    BLOCK_ON_SLIDER_RIGHT,
    BLOCKS_ON_TABLE,
    CALVIN_START_ROBOT_OBS,
    CONDITION_KEYS,
    calvin_state_for_condition,
    condition_seed,
    fnv1_32,
    pyhash_fnv1_32,
)
from openhelix_ros.sim.protocol import initial_conditions, sample_chains


def test_the_hash_is_pyhashs_fnv1_32():
    # pyhash's own test vectors (tests/test_fnv1.py): FNV-1 from seed 0, a str hashed as UTF-16-LE.
    assert fnv1_32(b"test") == 3698262380
    assert pyhash_fnv1_32("test") == 3910690890
    assert fnv1_32(b"test", seed=0x811C9DC5) != 3698262380  # the textbook offset basis is not pyhash's


def test_the_seed_is_the_hash_of_the_values_text_in_calvins_key_order():
    condition = initial_conditions()[0]
    assert list(condition) == list(CONDITION_KEYS)
    assert str(condition.values()).startswith("dict_values([0, 0, 'right', 'closed', ")
    assert condition_seed(condition) == pyhash_fnv1_32(str(condition.values()))
    # A chain's condition comes back sorted by key (sim.protocol's chains): the same seed all the same.
    shuffled = dict(sorted(condition.items()))
    assert list(shuffled) != list(condition) and condition_seed(shuffled) == condition_seed(condition)
    for chain_condition, _ in sample_chains(20, 0):
        np.testing.assert_array_equal(calvin_state_for_condition(chain_condition)[1],
                                      calvin_state_for_condition({k: chain_condition[k] for k in CONDITION_KEYS})[1])


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
    with pytest.raises(ValueError, match="unknown key"):
        calvin_state_for_condition({**initial_conditions()[0], "door": "open"})
    with pytest.raises(ValueError, match="lacks pink_block"):
        calvin_state_for_condition({"led": 0, "lightbulb": 0, "slider": "left", "drawer": "open",
                                    "red_block": "table", "blue_block": "table"})


# Block poses (x, y, z, yaw of red, blue, pink) that CALVIN's own get_env_state_for_initial_condition
# returned for these conditions, computed by hand with the real pyhash 0.9.3 on Python 3.8 (it does not
# build on 3.11); all 192 start conditions and 1000 chains matched bit for bit then.
CALVIN_REFERENCE = [
    (dict(led=0, lightbulb=0, slider="right", drawer="closed", red_block="table", blue_block="table",
          pink_block="slider_right", grasped=0),
     [(0.229995412, -0.11999514, 0.45999001, 1.441870925215), (0.0500000896, -0.120000177, 0.459990009, 1.409880699495),
      (0.070341633, 0.0924044687, 0.460990009, 1.563061619952)]),
    (dict(led=0, lightbulb=1, slider="right", drawer="closed", red_block="slider_left", blue_block="table",
          pink_block="table", grasped=0),
     [(-0.240851662, 0.0924044687, 0.460990009, 1.484054760893), (0.229995412, -0.11999514, 0.45999001, 1.811293859104),
      (0.0500000896, -0.120000177, 0.459990009, 1.248875158326)]),
    (dict(led=1, lightbulb=1, slider="left", drawer="open", red_block="slider_left", blue_block="slider_right",
          pink_block="table", grasped=0),
     [(-0.240851662, 0.0924044687, 0.460990009, 1.327967944724), (0.070341633, 0.0924044687, 0.460990009, 1.780830290074),
      (0.229995412, -0.11999514, 0.45999001, 1.421884172312)]),
]


@pytest.mark.parametrize("condition, blocks", CALVIN_REFERENCE)
def test_states_equal_what_calvins_own_function_returned(condition, blocks):
    _, scene_obs = calvin_state_for_condition(condition)
    for offset, (x, y, z, yaw) in zip((6, 12, 18), blocks, strict=True):
        np.testing.assert_allclose(scene_obs[offset:offset + 3], (x, y, z), atol=1e-9)
        assert scene_obs[offset + 5] == pytest.approx(yaw, abs=1e-11)
