"""The real calvin_env scene's geometry, measured from calvin_env's own files at run time.

``calvin_geometry("calvin_scene_D")`` loads the scene as calvin_env does (its ``conf/scene/<scene>.yaml``:
the table URDF at its pose with the scene's ``global_scaling``, the three block URDFs) into a private
headless PyBullet client and measures what the scripted expert needs: link boxes at the joints'
limits (which way each joint moves its link), and ray casts where a box is not tight enough (the
desk's height, the drawer's U-shaped handle and the gap behind its bar, the door's knob, the
switch's front and top faces). Nothing of CALVIN's is copied: the numbers come from its installed
files, so a scene A, B or C works the same way.

Needs calvin_env installed (for its data and configs); the expert, the bridge and System 1 all call
this through ``sim/backends.py``.
"""

from __future__ import annotations

import math
import os
import warnings
from functools import lru_cache

import numpy as np
import yaml

from openhelix_ros.sim.geometry import SceneGeometry

# The closed fingertips of calvin's Panda reach this far below its TCP link (``tcp``): lowered onto
# the desk, the TCP stops 0.015 m above it (measured with panda_longer_finger and panda alike).
CALVIN_FINGERTIP_BELOW_TCP = 0.015
FINGER_HALF_THICKNESS = 0.012  # half a finger pad's depth across the pushing direction


def calvin_package_dir() -> str:
    from openhelix_ros.sim.calvin_backend import _require_calvin

    calvin_env = _require_calvin()
    return os.path.dirname(os.path.dirname(calvin_env.__file__))


def calvin_scenes() -> list[str]:
    directory = os.path.join(calvin_package_dir(), "conf", "scene")
    return sorted(name[:-5] for name in os.listdir(directory) if name.startswith("calvin_scene_"))


class _Probe:
    """A private DIRECT PyBullet client with a calvin scene's table and blocks loaded."""

    def __init__(self, config: dict):
        import pybullet as pb

        package_dir = calvin_package_dir()
        self.config = config
        self.pb = pb
        self.client = pb.connect(pb.DIRECT)
        data = os.path.join(package_dir, "data")
        scaling = float(self.config["global_scaling"])
        (table,) = self.config["objects"]["fixed_objects"].values()
        self.table = pb.loadURDF(os.path.join(data, table["file"]), table["initial_pos"],
                                 pb.getQuaternionFromEuler(table["initial_orn"]), globalScaling=scaling,
                                 physicsClientId=self.client)
        self.joints = {pb.getJointInfo(self.table, j, physicsClientId=self.client)[1].decode(): j
                       for j in range(pb.getNumJoints(self.table, physicsClientId=self.client))}
        self.block_names = tuple(self.config["objects"]["movable_objects"])
        self.block_sizes = {}
        for name, block in self.config["objects"]["movable_objects"].items():
            uid = pb.loadURDF(os.path.join(data, block["file"]), [0, 0, -5], [0, 0, 0, 1], globalScaling=scaling,
                              physicsClientId=self.client)
            low, high = pb.getAABB(uid, -1, physicsClientId=self.client)
            self.block_sizes[name] = tuple(round(float(h - lo), 4) for lo, h in zip(low, high, strict=True))
            pb.removeBody(uid, physicsClientId=self.client)
        self._update()

    def _update(self) -> None:
        # Ray casts see a body where the broadphase last put it: refresh it after loading or moving one.
        self.pb.performCollisionDetection(physicsClientId=self.client)

    def close(self) -> None:
        self.pb.disconnect(self.client)

    def link(self, joint: str) -> int:
        return self.joints[joint]

    def box(self, link: int) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.pb.getAABB(self.table, link, physicsClientId=self.client)
        return np.asarray(low), np.asarray(high)

    def limits(self, joint: str) -> tuple[float, float]:
        info = self.pb.getJointInfo(self.table, self.link(joint), physicsClientId=self.client)
        return float(info[8]), float(info[9])

    def set(self, joint: str, value: float) -> None:
        self.pb.resetJointState(self.table, self.link(joint), value, physicsClientId=self.client)
        self._update()

    def direction(self, joint: str) -> np.ndarray:
        """Unit vector its link moves along as the prismatic joint's value grows."""
        link, (_, upper) = self.link(joint), self.limits(joint)
        before = self.box(link)[0]
        self.set(joint, upper)
        after = self.box(link)[0]
        self.set(joint, 0.0)
        shift = after - before
        return shift / np.linalg.norm(shift)

    def hit(self, start, end, link: int | None = None) -> np.ndarray | None:
        """Where the ray first meets the table (the given link, if any); None when it misses."""
        result = self.pb.rayTest(list(start), list(end), physicsClientId=self.client)[0]
        if result[0] != self.table or (link is not None and result[1] != link):
            return None
        return np.asarray(result[3])


def _front_profile(probe: _Probe, link: int, xs, zs, y_from: float = -1.0, y_to: float = 0.5) -> np.ndarray:
    """For each (z, x): y where a ray along +y first meets ``link`` (NaN where it meets something else)."""
    profile = np.full((len(zs), len(xs)), np.nan)
    for i, z in enumerate(zs):
        for j, x in enumerate(xs):
            point = probe.hit((x, y_from, z), (x, y_to, z), link)
            if point is not None:
                profile[i, j] = point[1]
    return profile


def _measure_drawer(probe: _Probe, table_top: float) -> dict:
    link = probe.link("base__drawer")
    low, high = probe.box(link)
    xs = np.arange(low[0], high[0], 0.005)
    zs = np.arange(low[2], high[2], 0.005)
    profile = _front_profile(probe, link, xs, zs)
    front = float(np.nanmax(profile))  # the tray's front face
    handle = profile < front - 0.02  # what stands out of the face: the handle
    rows, cols = np.nonzero(handle)
    handle_z = (float(zs[rows.min()]), float(zs[rows.max()]))
    handle_x = float((xs[cols.min()] + xs[cols.max()]) / 2)
    handle_front = float(np.nanmin(profile))
    # The gap behind the handle's bar: down rays at the handle's centre from just above its top.
    ys = np.arange(handle_front, front, 0.0025)
    blocked = [probe.hit((handle_x, y, handle_z[1] + 0.01), (handle_x, y, handle_z[0] - 0.005), link) is not None
               for y in ys]
    gap, run = [], []
    for y, b in zip(ys, blocked, strict=True):
        run = [] if b else run + [y]
        if len(run) > len(gap):
            gap = run
    if len(gap) * 0.0025 < 0.025:
        raise RuntimeError(f"calvin's drawer handle has no gap a finger fits behind (widest {len(gap) * 2.5:.1f} mm)")
    # The floor of the tray, opened.
    _, upper = probe.limits("base__drawer")
    probe.set("base__drawer", upper)
    opened_low, opened_high = probe.box(link)
    # 5 cm behind the opened tray's front face, down from the desk's height.
    inside = probe.hit((handle_x, front - upper + 0.05, table_top), (handle_x, front - upper + 0.05, low[2] - 0.05), link)
    probe.set("base__drawer", 0.0)
    if inside is None:
        raise RuntimeError("could not find the floor of calvin's drawer")
    return {"handle_x": handle_x, "grip_y": float((gap[0] + gap[-1]) / 2), "handle_bottom": handle_z[0],
            "front": front, "bottom": float(inside[2]), "slot_x": float((opened_low[0] + opened_high[0]) / 2),
            "upper": upper}


def _measure_door(probe: _Probe) -> dict:
    link = probe.link("base__slide")
    low, high = probe.box(link)
    xs = np.arange(low[0], high[0], 0.005)
    zs = np.arange(low[2], high[2], 0.005)
    profile = _front_profile(probe, link, xs, zs)
    with warnings.catch_warnings():  # heights the door does not reach are all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        face = np.nanmedian(profile, axis=1, keepdims=True)  # the panel's (sloping) face at each height
    knob = profile < face - 0.03
    rows, cols = np.nonzero(knob)
    knob_x = float((xs[cols.min()] + xs[cols.max()]) / 2)
    bottom = float(zs[rows.min()])
    # Push a few centimetres above the knob's bottom, half-way between its front and the panel.
    row = min(rows.max(), rows.min() + 6)
    column = int(np.argmin(np.abs(xs - knob_x)))
    knob_y = float((profile[row, column] + face[row, 0]) / 2)
    tops = [probe.hit((x, y, high[2] + 0.1), (x, y, low[2]), link) for x in xs[::4]
            for y in np.arange(low[1], high[1], 0.01)]
    top = max(float(point[2]) for point in tops if point is not None)
    return {"span": (float(low[0]), float(high[0])), "knob_x": knob_x, "knob_y": knob_y,
            "knob_half_width": float((xs[cols.max()] - xs[cols.min()]) / 2),
            "knob_bottom": bottom, "top": top, "direction": probe.direction("base__slide"),
            "limits": probe.limits("base__slide")}


def _measure_switch(probe: _Probe) -> dict:
    link = probe.link("base__switch")
    low, high = probe.box(link)
    centre = (low + high) / 2
    zs = np.arange(low[2], high[2], 0.0025)
    profile = _front_profile(probe, link, [centre[0]], zs)[:, 0]
    front_y = float(np.nanmin(profile))
    face_z = float(zs[int(np.nanargmin(profile))])  # the knob's most forward point
    top = None
    for y in np.arange(low[1], high[1], 0.0025):
        point = probe.hit((centre[0], y, high[2] + 0.05), (centre[0], y, low[2] - 0.01), link)
        if point is not None and (top is None or point[2] > top[2]):
            top = point
    if top is None:
        raise RuntimeError("could not find the top of calvin's switch")
    return {"centre": centre, "low": low, "high": high, "front_y": front_y, "face_z": face_z, "top": top,
            "direction": probe.direction("base__switch"), "limits": probe.limits("base__switch")}


def scene_config(scene: str) -> dict:
    """calvin_env's conf/scene/<scene>.yaml as a dict."""
    path = os.path.join(calvin_package_dir(), "conf", "scene", f"{scene}.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"calvin_env has no scene {scene!r}; choose one of {', '.join(calvin_scenes())}")
    with open(path) as handle:
        return yaml.safe_load(handle)


@lru_cache(maxsize=4)
def calvin_geometry(scene: str = "calvin_scene_D") -> SceneGeometry:
    """calvin_env's ``scene`` (conf/scene/<scene>.yaml) measured; calvin_env must be installed."""
    return measure_scene(scene_config(scene), scene)


def measure_scene(config: dict, name: str) -> SceneGeometry:
    """The geometry of a calvin scene configuration (a conf/scene file's content, or the ``scene``
    section of a dataset split's merged config)."""
    probe = _Probe(config)
    try:
        config = probe.config
        surfaces = config["surfaces"]
        table_region = np.asarray(surfaces["table"], dtype=float)
        # The desk's top: the highest the desk body is over the region blocks rest on (where a ray meets
        # the base link; the drawer's own link shows through in places).
        heights = [probe.hit((x, y, 2.0), (x, y, -1.0), link=-1)
                   for x in np.linspace(*table_region[:, 0], 8) for y in np.linspace(*table_region[:, 1], 4)]
        table_top = float(max(point[2] for point in heights if point is not None))
        shelf_low, shelf_high = probe.box(probe.link("base__plank"))
        desk_low, desk_high = probe.box(-1)
        left = np.asarray(surfaces["slider_left"], dtype=float).mean(axis=0)
        right = np.asarray(surfaces["slider_right"], dtype=float).mean(axis=0)
        door = _measure_door(probe)
        drawer = _measure_drawer(probe, table_top)
        switch = _measure_switch(probe)
        button_low, button_high = probe.box(probe.link("base__button"))
        button_direction = probe.direction("base__button")
        if button_direction[2] > -0.9:
            raise RuntimeError(f"calvin's button does not move down when pressed (moves along {button_direction})")
        door_x = float(door["direction"][0])
        tip = CALVIN_FINGERTIP_BELOW_TCP
        knob = switch["centre"]
        base = config["robot_base_position"]
        near_end = switch["low"][0] if base[0] < knob[0] else switch["high"][0]
        push_x = float(near_end + math.copysign(0.05, knob[0] - near_end) - knob[0])
        return SceneGeometry(
            name=name,
            table_top=table_top,
            table_region_x=(float(table_region[0, 0]), float(table_region[1, 0])),
            table_region_y=(float(table_region[0, 1]), float(table_region[1, 1])),
            robot_base_x=float(base[0]),
            block_names=probe.block_names,
            block_sizes=probe.block_sizes,
            fingertip_below_tcp=tip,
            shelf_x=(float(shelf_low[0]), float(shelf_high[0])),
            shelf_y=(float(shelf_low[1]), float(shelf_high[1])),
            shelf_top=float(shelf_high[2]),
            slider_left_slot=(float(left[0]), float(left[1])),
            slider_right_slot=(float(right[0]), float(right[1])),
            # The door covers the right compartment at 0 and moves left: past half-way it covers the left.
            door_covers_left_above=abs(float(right[0] - left[0])) / 2,
            cabinet_front_y=door["knob_y"] - 0.03,
            # A held block (4 cm) hangs below the fingertips: clear the door's top by 2 cm.
            cabinet_clear_height=door["top"] + max(s[2] for s in probe.block_sizes.values()) + tip + 0.02,
            # The open compartment is open in front and above: no need to come from over the door.
            shelf_hover_height=float(shelf_high[2]) + 0.16,
            # The cabinet's back wall stands 3 cm behind a block on the shelf, as high as the wrist of a
            # hand pointing straight down: leaning the fingers back brings the wrist 4 cm forward.
            shelf_grasp_tilt=0.3,
            door_span=door["span"],
            door_direction=math.copysign(1.0, door_x),
            door_range=door["limits"],
            door_knob_x=door["knob_x"],
            door_knob_half_width=door["knob_half_width"],
            door_knob_y=door["knob_y"],
            door_knob_z=door["knob_bottom"] + 0.02 + tip,
            reach_over_door=False,  # the door stands in the compartment it covers, as tall as the cabinet
            drawer_handle_x=drawer["handle_x"],
            drawer_grip_y=drawer["grip_y"],
            drawer_handle_z=drawer["handle_bottom"] + 0.008 + tip,
            drawer_grip_yaw_offset=0.0,
            drawer_hook=True,  # closed fingers behind the U-handle's bar pull it; no grasp needed
            drawer_front_y=drawer["front"],
            drawer_slot_x=drawer["slot_x"],
            drawer_bottom=drawer["bottom"],
            drawer_pull=min(0.19, drawer["upper"] - 0.02),
            button_xy=(float((button_low[0] + button_high[0]) / 2), float((button_low[1] + button_high[1]) / 2)),
            button_top=float(button_high[2]),
            button_travel=probe.limits("base__button")[1],
            switch_knob=tuple(float(v) for v in knob),
            switch_direction=tuple(float(v) for v in switch["direction"]),
            switch_range=switch["limits"],
            # "On": the fingertips 4 mm into the knob's front face at its most forward point, pushing it
            # up its slope; "off": on its top, pushing it back down. Both 5 cm in from the knob's end
            # nearer the robot: the switch is at the edge of the Panda's reach, where calvin's IK falls
            # 1-2 cm short (towards the robot).
            switch_on_contact=(push_x, switch["front_y"] - FINGER_HALF_THICKNESS + 0.004 - float(knob[1]),
                               switch["face_z"] + tip - float(knob[2])),
            switch_off_contact=(push_x, float(switch["top"][1] - knob[1]),
                                float(switch["top"][2]) + tip + 0.004 - float(knob[2])),
            # CALVIN-D's blocks stay 11 cm in from the desk's sides, 2 cm behind its front edge and 3 cm in
            # front of the door's knob, as on the play table, and right of the button (which stands on
            # the desk here, where a block would run into it).
            dynamic_strip=((max(float(desk_low[0]) + 0.11, float(button_high[0]) + 0.045), float(desk_high[0]) - 0.11),
                           (drawer["front"] + 0.02, door["knob_y"] - 0.06)),
            # calvin's static camera looks from 4 m away (its depth runs to 6.2 m): keep every rendered
            # pixel and crop the cloud to the desk, the robot's side of it and the cabinet instead.
            camera_max_depth=10.0,
            cloud_bounds=((float(desk_low[0]) - 0.1, float(base[1]) - 0.15, drawer["bottom"] - 0.05),
                          (float(desk_high[0]) + 0.1, float(desk_high[1]) + 0.05, float(desk_high[2]) + 0.15)),
            # The desk and a margin; from in front of the robot's base to behind the shelf; from under the
            # drawer's floor to 0.65 m above the desk (the play table's box, in this frame).
            switch_yaw_offset=0.0,  # hand long along x, along the switch: clear of the housing behind it
            # Switched on, the knob's top is out of reach of a hand pointing straight down (calvin's IK
            # stops 5 cm short); leaning the fingers 0.7 rad forwards brings it within 5 mm.
            switch_off_tilt=0.7,
            workspace_low=(float(desk_low[0]) - 0.16, float(base[1]) - 0.25, drawer["bottom"] - 0.05),
            workspace_high=(float(desk_high[0]) + 0.16, float(shelf_high[1]) + 0.15, table_top + 0.65),
        )
    finally:
        probe.close()
