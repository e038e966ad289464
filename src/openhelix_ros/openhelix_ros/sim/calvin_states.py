"""CALVIN's own start states: the concrete (robot_obs, scene_obs) CALVIN's evaluation resets its world to
for a symbolic start condition, in calvin_env's world frame.

The released evaluation builds them in calvin_models (``get_env_state_for_initial_condition``): one
fixed arm pose; the blocks on the table at two fixed spots (shuffled) or in the slider's two slots;
each block's yaw drawn from pi/2 +- pi/8. The draws come from numpy's legacy global RNG seeded with
``pyhash.fnv1_32()(str(condition.values()))``, so every condition always gives the same state. That
hash is pyhash's flavour of 32-bit FNV-1: it starts from 0, not from FNV's offset basis, and hashes a
``str`` as its UTF-16-LE bytes (pyhash's src/FNV1.h and Hash.h; its tests: b"test" -> 3698262380,
"test" -> 3910690890). This is that logic written anew (neither calvin_models nor pyhash, which does
not build on Python 3.11, needs be installed), with the RNG as a local ``RandomState``: the same stream,
the caller's global state untouched. The constants are CALVIN's.
"""

from __future__ import annotations

import numpy as np

# The arm's start pose: tcp xyz, tcp euler xyz, gripper width, 7 joints, gripper action (open).
CALVIN_START_ROBOT_OBS = (0.02586889, -0.2313129, 0.5712808, 3.09045411, -0.02908596, 1.50013585, 0.07999963,
                          -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928,
                          1.0)
BLOCK_ON_SLIDER_LEFT = (-2.40851662e-01, 9.24044687e-02, 4.60990009e-01)
BLOCK_ON_SLIDER_RIGHT = (7.03416330e-02, 9.24044687e-02, 4.60990009e-01)
BLOCKS_ON_TABLE = ((5.00000896e-02, -1.20000177e-01, 4.59990009e-01), (2.29995412e-01, -1.19995140e-01, 4.59990010e-01))
BLOCK_YAW_RANGE = (np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8)
SLIDER_LEFT_STATE = 0.28
DRAWER_OPEN_STATE = 0.22
LIGHTBULB_ON_SWITCH_STATE = 0.088

FNV1_32_PRIME = 0x01000193
# CALVIN's condition keys in the order its get_sequences builds them: the order is part of the seed.
CONDITION_KEYS = ("led", "lightbulb", "slider", "drawer", "red_block", "blue_block", "pink_block", "grasped")


def fnv1_32(data: bytes, seed: int = 0) -> int:
    """32-bit FNV-1 (multiply, then xor each byte) from ``seed``; pyhash's default seed is 0."""
    value = seed
    for byte in data:
        value = (value * FNV1_32_PRIME) & 0xFFFFFFFF
        value ^= byte
    return value


def pyhash_fnv1_32(text: str) -> int:
    """``pyhash.fnv1_32()(text)``: FNV-1 from 0 over the text's UTF-16-LE bytes (no byte-order mark)."""
    return fnv1_32(text.encode("utf-16-le"))


def condition_seed(condition: dict) -> int:
    """The seed CALVIN derives from a condition: the hash of the text of its values in CALVIN's key
    order (a condition built in another order, e.g. sorted, is put back in that order first)."""
    return pyhash_fnv1_32(str(_in_calvin_order(condition).values()))


def _in_calvin_order(condition: dict) -> dict:
    missing = [key for key in CONDITION_KEYS[:-1] if key not in condition]
    if missing:
        raise ValueError(f"start condition lacks {', '.join(missing)}: {condition}")
    unknown = sorted(set(condition) - set(CONDITION_KEYS))
    if unknown:
        raise ValueError(f"start condition has unknown key(s) {', '.join(unknown)}: {condition}")
    return {key: condition.get(key, 0) for key in CONDITION_KEYS}


def calvin_state_for_condition(condition: dict) -> tuple[np.ndarray, np.ndarray]:
    """(robot_obs (15,), scene_obs (24,)) CALVIN's evaluation starts ``condition`` from (CALVIN's keys,
    in any order; ``grasped`` may be left out)."""
    condition = _in_calvin_order(condition)
    rng = np.random.RandomState(condition_seed(condition))
    table = [np.array(spot) for spot in BLOCKS_ON_TABLE]
    rng.shuffle(table)
    scene_obs = np.zeros(24)
    scene_obs[0] = SLIDER_LEFT_STATE if condition["slider"] == "left" else 0.0
    scene_obs[1] = DRAWER_OPEN_STATE if condition["drawer"] == "open" else 0.0
    scene_obs[3] = LIGHTBULB_ON_SWITCH_STATE if condition["lightbulb"] == 1 else 0.0
    scene_obs[4] = condition["lightbulb"]
    scene_obs[5] = condition["led"]
    slots = {"slider_right": BLOCK_ON_SLIDER_RIGHT, "slider_left": BLOCK_ON_SLIDER_LEFT}
    # Which table spot a block on the table takes, as CALVIN assigns them: red the first; blue the
    # second when red is on the table too, else the first; pink always the second.
    red = slots.get(condition["red_block"], table[0])
    blue = slots.get(condition["blue_block"], table[1] if condition["red_block"] == "table" else table[0])
    pink = slots.get(condition["pink_block"], table[1])
    for offset, position in ((6, red), (12, blue), (18, pink)):
        scene_obs[offset:offset + 3] = position
        scene_obs[offset + 5] = rng.uniform(*BLOCK_YAW_RANGE)  # one draw per block, in this order
    return np.array(CALVIN_START_ROBOT_OBS), scene_obs
