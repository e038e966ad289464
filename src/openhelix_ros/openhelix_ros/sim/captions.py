"""Captions and questions about a play-table scene, read from the simulator's own state.

System 2's vision tower learns to see the play table from these (issue 10: LLaVA's stage-1 recipe on
this project's own data). Every statement is a ``Fact``: a clause of the caption ("the drawer is open"),
the question it answers ("Is the drawer open or closed?") and the closed set of answers it is scored
against. Facts are read from the state after the scene is set (joint values, light states, contacts,
which pixels of the static camera each block and part covers), never from what the sampler intended, so
a block the arm hides is "not visible" rather than "on the table", and an LED the arm hides is not
mentioned.

``sample_scene`` draws a varied scene: the symbolic CALVIN start conditions widened with blocks in the
drawer, doors and drawers part-way, and the arm anywhere above the desk, open or closed.
``write_captioned_scenes`` renders a set of them into the directory layout that
``openhelix_training.vision_pretraining`` reads (ROS-free on both sides).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pybullet as pb

from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.cameras import STATIC_CAMERA, view_matrix

COLOURS = {name: name.removeprefix("block_") for name in sc.BLOCK_NAMES}
# Where a block is: the one-word answer (each starts with its own token, so a question is scored by the
# answer's first token) and the caption's phrase.
PLACE_PHRASES = {"table": "on the table", "drawer": "in the drawer", "left cabinet": "in the left cabinet",
                 "right cabinet": "in the right cabinet", "gripper": "in the gripper",
                 "stacked": "on another block", "hidden": "not visible"}
PLACES = tuple(PLACE_PHRASES)
TABLE_REGIONS = ("left", "middle", "right")
REGION_PHRASES = {"left": "on the left of the table", "middle": "in the middle of the table",
                  "right": "on the right of the table"}
# Visibility, in pixels of the 200 x 200 static image (System 2 sees it at 112 x 112): a block is
# "hidden" at HIDDEN_PIXELS or fewer, stated where it is from VISIBLE_PIXELS on, and left out between
# (too little of it shows to tell). A part of the table (LED, bulb, drawer, door) the arm hides below
# its own count is left out too.
HIDDEN_PIXELS = 2
VISIBLE_PIXELS = 15
PART_PIXELS = {"led_link": 8, "lightbulb_link": 20, "drawer_link": 50, "slide_link": 50}
# A sampled arm may not sink more than this into the desk or cabinet (the reset checks only the blocks)
ARM_PENETRATION = 0.005
# Words are left out where the state is too close to a threshold for the picture to decide them.
DOOR_MARGIN = 0.04  # m either side of the door's middle (SLIDER_IS_LEFT_ABOVE)
DRAWER_MARGIN = 0.03  # m either side of DRAWER_IS_OPEN_ABOVE
REGION_EDGES = (-0.08, 0.08)  # world x (the image's left to right) splitting the table strip in three
REGION_MARGIN = 0.015
LEFT_OF_MARGIN = 0.05  # m in world x before one block is said to be left of another
GRIPPER_OPEN_ABOVE = 0.05  # opening width, m
GRIPPER_CLOSED_BELOW = 0.03
DATASET_VERSION = 2


@dataclass(frozen=True)
class Fact:
    key: str  # what it is about: "drawer", "block_red.place", "block_red.left_of.block_blue", ...
    clause: str  # as the caption says it ("" when another fact's clause already says it)
    question: str
    answer: str
    choices: tuple[str, ...]


def _pixel_counts(env) -> tuple[dict[str, int], dict[str, int]]:
    """How many pixels of the static camera each block, and each part of the table in PART_PIXELS,
    covers (a segmentation render by body and link)."""
    extrinsics = env.camera_info()["static"]["extrinsics"]
    _, _, _, _, segmentation = pb.getCameraImage(
        STATIC_CAMERA.width, STATIC_CAMERA.height, viewMatrix=view_matrix(extrinsics),
        projectionMatrix=STATIC_CAMERA.projection_matrix(), renderer=env._renderer, shadow=0,
        flags=pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX, physicsClientId=env.client)
    value = np.asarray(segmentation).reshape(-1)
    body = value & ((1 << 24) - 1)  # low 24 bits: the body id; above them the link index + 1
    link = (value >> 24) - 1
    blocks = {name: int(np.count_nonzero(body == uid)) for name, uid in env.handles.blocks.items()}
    table = body == env.table
    parts = {name: int(np.count_nonzero(table & (link == env.handles.table_links[name]))) for name in PART_PIXELS}
    return blocks, parts


def _block_place(env, name: str, info: dict) -> str:
    """Where a block rests (a key of PLACE_PHRASES), by what supports it; "gripper" only when both fingers
    touch it and nothing else does."""
    uid_of = {v["uid"]: n for n, v in info["scene_info"]["movable_objects"].items()}
    links = env.handles.table_links
    touching = info["scene_info"]["movable_objects"][name]["contacts"]
    table_links = {c[4] for c in touching if c[2] == env.table}
    position = info["scene_info"]["movable_objects"][name]["current_pos"]
    if links["drawer_link"] in table_links:
        return "drawer"
    if links["plank_link"] in table_links:
        return "left cabinet" if position[0] < 0 else "right cabinet"
    if -1 in table_links:
        return "table"
    if any(c[2] in uid_of and uid_of[c[2]] != name for c in touching):
        return "stacked"
    fingers = {c[4] for c in touching if c[2] == env.robot}
    return "gripper" if set(sc.PANDA_FINGER_JOINTS) <= fingers else "table"


def scene_facts(env) -> list[Fact]:
    """Everything the static camera shows that a caption says, as Facts, in a fixed order."""
    scene = env.get_scene_obs()
    info = env.get_info()
    facts: list[Fact] = []
    pixels, parts = _pixel_counts(env)
    seen = {name: parts[name] >= minimum for name, minimum in PART_PIXELS.items()}
    door, drawer = float(scene[0]), float(scene[1])
    if abs(door - sc.SLIDER_IS_LEFT_ABOVE) > DOOR_MARGIN and seen["slide_link"]:
        side = "left" if door > sc.SLIDER_IS_LEFT_ABOVE else "right"
        facts.append(Fact("door", f"the sliding door is on the {side}", "Is the sliding door on the left or the right?",
                          side, ("left", "right")))
    if abs(drawer - sc.DRAWER_IS_OPEN_ABOVE) > DRAWER_MARGIN and seen["drawer_link"]:
        state = "open" if drawer > sc.DRAWER_IS_OPEN_ABOVE else "closed"
        facts.append(Fact("drawer", f"the drawer is {state}", "Is the drawer open or closed?", state,
                          ("open", "closed")))
    for key, words, value, link in (("lightbulb", "the light bulb", scene[4], "lightbulb_link"),
                                    ("led", "the green light", scene[5], "led_link")):
        if seen[link]:
            state = "on" if value > 0.5 else "off"
            facts.append(Fact(key, f"{words} is {state}", f"Is {words} on or off?", state, ("on", "off")))
    on_table = []
    for name in sc.BLOCK_NAMES:
        colour = COLOURS[name]
        if HIDDEN_PIXELS < pixels[name] < VISIBLE_PIXELS:
            continue  # too little shows to tell where it is, or that it is hidden
        place = _block_place(env, name, info) if pixels[name] >= VISIBLE_PIXELS else "hidden"
        region = None
        if place == "table":
            x = float(info["scene_info"]["movable_objects"][name]["current_pos"][0])
            on_table.append((name, x))
            if min(abs(x - e) for e in REGION_EDGES) > REGION_MARGIN:
                region = TABLE_REGIONS[int(np.searchsorted(REGION_EDGES, x))]
        # one clause says both where a block is and, on the table, which part of it
        where = PLACE_PHRASES[place] if region is None else REGION_PHRASES[region]
        facts.append(Fact(f"{name}.place", f"the {colour} block is {where}", f"Where is the {colour} block?",
                          place, PLACES))
        if region is not None:
            facts.append(Fact(f"{name}.region", "", f"On which part of the table is the {colour} block?", region,
                              TABLE_REGIONS))
    for (a, xa), (b, xb) in ((p, q) for i, p in enumerate(on_table) for q in on_table[i + 1:]):
        if abs(xa - xb) > LEFT_OF_MARGIN:
            side = "left" if xa < xb else "right"
            facts.append(Fact(f"{a}.left_of.{b}", f"the {COLOURS[a]} block is {side} of the {COLOURS[b]} block",
                              f"Is the {COLOURS[a]} block left or right of the {COLOURS[b]} block?", side,
                              ("left", "right")))
    width = float(info["robot_info"]["gripper_opening_width"])
    if width > GRIPPER_OPEN_ABOVE or width < GRIPPER_CLOSED_BELOW:
        state = "open" if width > GRIPPER_OPEN_ABOVE else "closed"
        facts.append(Fact("gripper", f"the gripper is {state}", "Is the gripper open or closed?", state,
                          ("open", "closed")))
    return facts


def caption(facts: list[Fact]) -> str:
    """The caption: the facts' clauses, in order, joined by semicolons, ending with a full stop."""
    return "; ".join(f.clause for f in facts if f.clause) + "."


# ------------------------------------------------------------------------------------------ sampling

def _scene_condition(rng: np.random.Generator) -> dict:
    """A symbolic scene: CALVIN's start-condition vocabulary plus a block in the drawer, with at most one
    block per cabinet side and in the drawer, and at least one on the table."""
    while True:
        places = {name: str(rng.choice(["table", "table", "slider_left", "slider_right", "drawer"]))
                  for name in sc.BLOCK_NAMES}
        counts = list(places.values())
        if counts.count("table") >= 1 and all(counts.count(p) <= 1 for p in ("slider_left", "slider_right", "drawer")):
            break
    condition = {"led": int(rng.integers(2)), "lightbulb": int(rng.integers(2)),
                 "slider": str(rng.choice(["left", "right"])), "drawer": str(rng.choice(["open", "closed"]))}
    if "drawer" in counts:
        condition["drawer"] = "open" if rng.random() < 0.8 else "closed"
    condition |= {f"{COLOURS[n]}_block": p for n, p in places.items()}
    return condition


def sample_scene(env, rng: np.random.Generator, attempts: int = 50) -> None:
    """Reset ``env`` to a random varied scene (see the module docstring); retries impossible ones."""
    from openhelix_ros.sim.protocol import state_for_condition

    for _ in range(attempts):
        condition = _scene_condition(rng)
        _, scene_obs = state_for_condition(condition, rng)
        if rng.random() < 0.3:  # the door part-way
            scene_obs[0] = rng.uniform(*sc.DOOR_RANGE)
        if rng.random() < 0.3 and condition["drawer"] == "closed" or rng.random() < 0.15:
            # the drawer part-way; a block in it moves with it
            before = scene_obs[1]
            scene_obs[1] = rng.uniform(*sc.DRAWER_RANGE)
            for name in sc.BLOCK_NAMES:
                if condition[f"{COLOURS[name]}_block"] == "drawer":
                    scene_obs[6 + 6 * sc.BLOCK_NAMES.index(name) + 1] -= scene_obs[1] - before
        tcp = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.30, 0.15), rng.uniform(0.08, 0.45)])
        width = float(rng.choice([2 * sc.PANDA_FINGER_MAX, rng.uniform(0.0, 0.02), rng.uniform(0.0, 0.08)]))
        try:
            robot_obs = env.robot_obs_for_tcp(tcp, yaw=rng.uniform(0.0, math.pi), gripper_width=width,
                                              gripper_action=1.0 if width > 0.04 else -1.0)
            env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
        except ValueError:
            continue
        depths = [p[8] for p in pb.getClosestPoints(env.robot, env.table, 0.0, physicsClientId=env.client)]
        if not depths or min(depths) > -ARM_PENETRATION:
            return
    raise RuntimeError(f"no possible scene in {attempts} attempts")  # pragma: no cover


def write_captioned_scenes(out_dir: str | Path, count: int, seed: int, shard_size: int = 500,
                           progress=None) -> Path:
    """Render ``count`` captioned scenes (static camera, 200 x 200) into ``out_dir``:
    ``images-NNNN.npy`` shards (uint8, (n, 200, 200, 3)), beside each ``facts-NNNN.jsonl`` (one line per
    scene: index, caption, facts) and ``manifest.json``. Resumable: finished shards are kept and the rest redrawn from
    their own seeds, so a resumed set equals an uninterrupted one."""
    from openhelix_ros.sim.config import PlayTableConfig
    from openhelix_ros.sim.env import PlayTableEnv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"version": DATASET_VERSION, "count": count, "seed": seed, "shard_size": shard_size,
                "camera": "static", "image_size": [STATIC_CAMERA.height, STATIC_CAMERA.width]}
    old = out / "manifest.json"
    if old.is_file() and json.loads(old.read_text()) != manifest:
        raise ValueError(f"{out} holds another scene set ({old.read_text().strip()}); choose another directory")
    old.write_text(json.dumps(manifest, indent=1))
    env = PlayTableEnv(PlayTableConfig(seed=seed))
    try:
        for shard in range(math.ceil(count / shard_size)):
            images_path = out / f"images-{shard:04d}.npy"
            facts_path = out / f"facts-{shard:04d}.jsonl"
            if images_path.is_file() and facts_path.is_file():
                continue
            rng = np.random.default_rng([seed, shard])
            n = min(shard_size, count - shard * shard_size)
            images = np.zeros((n, STATIC_CAMERA.height, STATIC_CAMERA.width, 3), np.uint8)
            lines = []
            for i in range(n):
                sample_scene(env, rng)
                images[i] = env.render_cameras()[0]["rgb_static"]
                facts = scene_facts(env)
                lines.append(json.dumps({"index": shard * shard_size + i, "caption": caption(facts),
                                         "facts": [asdict(f) for f in facts]}))
                if progress is not None:
                    progress(1)
            np.save(out / f".images-{shard:04d}.npy", images)
            (out / f".facts-{shard:04d}.jsonl").write_text("\n".join(lines) + "\n")
            (out / f".facts-{shard:04d}.jsonl").rename(facts_path)
            (out / f".images-{shard:04d}.npy").rename(images_path)
    finally:
        env.close()
    return out
