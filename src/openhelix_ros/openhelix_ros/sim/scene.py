"""The play table: geometry constants and the PyBullet bodies built from them.

Everything here is this project's own: the desk (with a drawer, a cabinet with a shelf and a sliding
door, a button with a green LED and a switch with a lightbulb) is written as URDF text at run time into
a temporary directory and loaded from there; the three blocks are boxes made with
``createMultiBody``. Only the Franka Panda comes from ``pybullet_data``.

World frame: the desk top is the plane z = 0, x points to the right as seen from the robot, y away
from the robot (so "push right" is +x, as in CALVIN). Lengths are metres.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pybullet as pb
import pybullet_data

# ----------------------------------------------------------------------------------------------------
# Geometry. One place for every number the scene, the oracle's state sampler and the expert share.
# ----------------------------------------------------------------------------------------------------

ROBOT_BASE_POSITION = (0.0, -0.52, 0.0)
ROBOT_BASE_ORIENTATION = (0.0, 0.0, 0.7071067811865476, 0.7071067811865476)  # facing +y (the desk)
# A neutral arm pose above the table, gripper pointing down (joint angles of the 7 Panda joints).
ROBOT_NEUTRAL_JOINTS = (0.0, -0.35, 0.0, -2.3, 0.0, 1.95, 0.785)
PANDA_ARM_JOINTS = tuple(range(7))
PANDA_FINGER_JOINTS = (9, 10)
PANDA_HAND_LINK = 8
PANDA_TCP_LINK = 11  # panda_grasptarget: between the fingertips
PANDA_FINGER_MAX = 0.04  # each finger's travel; the opening width is the sum of both

DESK_X = (-0.60, 0.60)
DESK_Y = (-0.20, 0.30)
DESK_THICKNESS = 0.04

# Where blocks "on the table" are placed by the state sampler (a strip in front of the cabinet).
TABLE_REGION_X = (-0.22, 0.22)
TABLE_REGION_Y = (-0.14, -0.07)

# Cabinet at the back of the desk: a raised shelf (its own link, ``plank_link``) behind a sliding door.
CABINET_X = (-0.36, 0.36)
CABINET_HEIGHT = 0.26
SHELF_Y = (0.06, 0.24)
SHELF_TOP = 0.04
SLIDER_LEFT_SLOT = (-0.17, 0.15)  # block position on the shelf, left compartment
SLIDER_RIGHT_SLOT = (0.17, 0.15)
DOOR_WIDTH = 0.34
DOOR_Y = (0.045, 0.060)
DOOR_Z = (0.045, 0.15)  # low enough that the forearm passes over it when the hand is behind it
DOOR_RANGE = (0.0, 0.34)  # joint value 0: door covers the right half; 0.34: the left half
# The door's knob is a tab on its top edge: it never reaches into the space where blocks are handled.
DOOR_KNOB_Y = DOOR_Y
DOOR_KNOB_Z = (0.145, 0.18)
SLIDER_IS_LEFT_ABOVE = 0.17  # symbolic state "slider left" when the joint is past the middle

# Drawer under the desk top at the front right, opening towards the robot (-y).
DRAWER_X = (0.12, 0.46)
DRAWER_Y = (-0.20, 0.10)  # tray footprint when closed
DRAWER_BOTTOM = -0.17
DRAWER_WALL_TOP = -0.06
DRAWER_RANGE = (0.0, 0.22)
DRAWER_OPEN_STATE = 0.18  # joint value used for the symbolic state "open"
DRAWER_IS_OPEN_ABOVE = 0.10
DRAWER_HANDLE_X = 0.29
DRAWER_HANDLE_Y = -0.265  # centre of the vertical handle bar when closed
DRAWER_HANDLE_Z = (-0.12, -0.06)
DRAWER_SLOT_Y = -0.09  # where a block sits in the drawer, in the closed drawer's frame (world y at q=0)
DRAWER_SLOT_X = 0.29  # centred, so that the hand clears the drawer's side walls

# Button (drives the green LED) and switch (drives the lightbulb).
BUTTON_XY = (-0.45, -0.05)
BUTTON_RADIUS = 0.025
BUTTON_TOP = 0.035
BUTTON_RANGE = (-0.02, 0.0)
BUTTON_PRESSED_BELOW = -0.012
LED_POSITION = (-0.45, 0.03, 0.012)
SWITCH_Y = -0.05
SWITCH_X0 = 0.42  # knob centre at joint value 0 (off side)
SWITCH_SIZE = (0.03, 0.04, 0.05)
SWITCH_RANGE = (0.0, 0.08)
SWITCH_ON_ABOVE = 0.06  # hysteresis: the bulb turns on past 0.06 and off below 0.02
SWITCH_OFF_BELOW = 0.02
LIGHTBULB_POSITION = (0.35, 0.20, 0.31)  # on the right wall, clear of a hand reaching the shelf

# Blocks: three sizes (full extents along their own x, y, z), CALVIN's colours.
BLOCK_NAMES = ("block_red", "block_blue", "block_pink")
BLOCK_SIZES = {
    "block_red": (0.05, 0.05, 0.05),
    "block_blue": (0.08, 0.04, 0.04),
    "block_pink": (0.06, 0.04, 0.03),
}
BLOCK_COLOURS = {
    "block_red": (0.85, 0.12, 0.10, 1.0),
    "block_blue": (0.12, 0.25, 0.85, 1.0),
    "block_pink": (0.95, 0.45, 0.75, 1.0),
}
BLOCK_MASS = 0.08

LED_ON_RGBA = (0.1, 1.0, 0.2, 1.0)
LED_OFF_RGBA = (0.05, 0.2, 0.07, 1.0)
BULB_ON_RGBA = (1.0, 0.95, 0.35, 1.0)
BULB_OFF_RGBA = (0.45, 0.45, 0.42, 1.0)

WOOD = (0.72, 0.55, 0.38, 1.0)
DARK_WOOD = (0.50, 0.36, 0.24, 1.0)
GREY = (0.55, 0.55, 0.58, 1.0)
WHITE = (0.9, 0.9, 0.9, 1.0)

# Joint names as CALVIN's oracle addresses them (scene_info["doors"][...]).
DOOR_JOINT = "base__slide"
DRAWER_JOINT = "base__drawer"
BUTTON_JOINT = "base__button"
SWITCH_JOINT = "base__switch"


# ----------------------------------------------------------------------------------------------------
# URDF text, generated.
# ----------------------------------------------------------------------------------------------------

@dataclass
class _Box:
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    collide: bool = True


@dataclass
class _Link:
    name: str
    mass: float
    boxes: list[_Box] = field(default_factory=list)
    spheres: list[tuple[tuple[float, float, float], float, tuple]] = field(default_factory=list)
    cylinders: list[tuple[tuple[float, float, float], float, float, tuple]] = field(default_factory=list)


def _fmt(values) -> str:
    return " ".join(f"{v:.5f}" for v in values)


def _material(rgba) -> str:
    return f'<material name="c{abs(hash(tuple(rgba))) % 10**8}"><color rgba="{_fmt(rgba)}"/></material>'


def _link_xml(link: _Link) -> str:
    parts = [f'<link name="{link.name}">']
    # A modest box inertia; the exact value does not matter for these slow prismatic parts. Static
    # links get mass 0 explicitly (else PyBullet warns and assumes 1 kg).
    inertia = "0.005" if link.mass > 0 else "0"
    parts.append(f'<inertial><mass value="{link.mass}"/><inertia ixx="{inertia}" iyy="{inertia}" '
                 f'izz="{inertia}" ixy="0" ixz="0" iyz="0"/></inertial>')
    for box in link.boxes:
        geometry = f'<geometry><box size="{_fmt(box.size)}"/></geometry>'
        origin = f'<origin xyz="{_fmt(box.centre)}"/>'
        parts.append(f"<visual>{origin}{geometry}{_material(box.rgba)}</visual>")
        if box.collide:
            parts.append(f"<collision>{origin}{geometry}</collision>")
    for centre, radius, rgba in link.spheres:
        parts.append(f'<visual><origin xyz="{_fmt(centre)}"/><geometry><sphere radius="{radius}"/>'
                     f"</geometry>{_material(rgba)}</visual>")
    for centre, radius, length, rgba in link.cylinders:
        origin = f'<origin xyz="{_fmt(centre)}"/>'
        geometry = f'<geometry><cylinder radius="{radius}" length="{length}"/></geometry>'
        parts.append(f"<visual>{origin}{geometry}{_material(rgba)}</visual>")
        parts.append(f"<collision>{origin}{geometry}</collision>")
    parts.append("</link>")
    return "".join(parts)


def _joint_xml(name, kind, parent, child, origin=(0, 0, 0), axis=(1, 0, 0), limits=(0.0, 0.0)) -> str:
    text = (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
            f'<origin xyz="{_fmt(origin)}"/>')
    if kind == "prismatic":
        text += (f'<axis xyz="{_fmt(axis)}"/>'
                 f'<limit lower="{limits[0]}" upper="{limits[1]}" effort="200" velocity="1.0"/>')
    return text + "</joint>"


def _box_between(lo, hi, rgba, collide=True) -> _Box:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return _Box(tuple((lo + hi) / 2), tuple(hi - lo), rgba, collide)


def play_table_urdf() -> str:
    """The desk as URDF text: base_link (desk, cabinet walls, pedestal), plank_link (the shelf), the
    sliding door, drawer, button, switch and the two lights (visual-only links)."""
    x0, x1 = DESK_X
    y0, y1 = DESK_Y
    base = _Link("base_link", 0.0)
    base.boxes.append(_box_between((x0, y0, -DESK_THICKNESS), (x1, y1, 0.0), WOOD))
    for lx in (x0 + 0.04, x1 - 0.04):  # legs
        for ly in (y0 + 0.04, y1 - 0.04):
            base.boxes.append(_box_between((lx - 0.03, ly - 0.03, -0.75), (lx + 0.03, ly + 0.03, -0.04),
                                           DARK_WOOD))
    # Pedestal under the robot so that it does not float in the images.
    bx, by, _ = ROBOT_BASE_POSITION
    base.boxes.append(_box_between((bx - 0.09, by - 0.09, -0.75), (bx + 0.09, by + 0.09, -0.01), GREY))
    # Cabinet walls and the lightbulb post.
    cx0, cx1 = CABINET_X
    sy0, sy1 = SHELF_Y
    base.boxes.append(_box_between((cx0, sy0, 0.0), (cx0 + 0.02, sy1 + 0.02, CABINET_HEIGHT), DARK_WOOD))
    base.boxes.append(_box_between((cx1 - 0.02, sy0, 0.0), (cx1, sy1 + 0.02, CABINET_HEIGHT), DARK_WOOD))
    base.boxes.append(_box_between((cx0, sy1, 0.0), (cx1, sy1 + 0.02, CABINET_HEIGHT), DARK_WOOD))
    lbx, lby, lbz = LIGHTBULB_POSITION
    base.boxes.append(_box_between((lbx - 0.01, lby - 0.01, CABINET_HEIGHT), (lbx + 0.01, lby + 0.01, lbz - 0.02),
                                   GREY))
    # Drawer housing: side and back panels under the desk top (no bottom, the drawer rides its joint).
    dx0, dx1 = DRAWER_X
    dy0, dy1 = DRAWER_Y
    for wx in (dx0 - 0.02, dx1 + 0.005):
        base.boxes.append(_box_between((wx, dy0 + 0.01, DRAWER_BOTTOM - 0.02),
                                       (wx + 0.015, dy1 + 0.03, -DESK_THICKNESS), DARK_WOOD))
    base.boxes.append(_box_between((dx0 - 0.02, dy1 + 0.015, DRAWER_BOTTOM - 0.02),
                                   (dx1 + 0.02, dy1 + 0.03, -DESK_THICKNESS), DARK_WOOD))
    # Button housing ring and switch rail (visual cues, also solid).
    bux, buy = BUTTON_XY
    base.boxes.append(_box_between((bux - 0.04, buy - 0.04, 0.0), (bux + 0.04, buy + 0.04, 0.008), GREY))
    base.boxes.append(_box_between((SWITCH_X0 - 0.03, SWITCH_Y - 0.03, 0.0),
                                   (SWITCH_X0 + SWITCH_RANGE[1] + 0.03, SWITCH_Y + 0.03, 0.005), GREY))

    shelf = _Link("plank_link", 0.0)
    shelf.boxes.append(_box_between((cx0 + 0.02, sy0, 0.0), (cx1 - 0.02, sy1, SHELF_TOP), WHITE))

    # The door's link frame sits at the joint origin (door centre when the joint is 0).
    door = _Link("slide_link", 0.4)
    door_half = DOOR_WIDTH / 2
    door.boxes.append(_box_between((-door_half, DOOR_Y[0], DOOR_Z[0]), (door_half, DOOR_Y[1], DOOR_Z[1]),
                                   (0.80, 0.78, 0.70, 1.0)))
    door.boxes.append(_box_between((-0.015, DOOR_KNOB_Y[0], DOOR_KNOB_Z[0]), (0.015, DOOR_KNOB_Y[1],
                                                                             DOOR_KNOB_Z[1]), GREY))

    drawer = _Link("drawer_link", 0.6)
    t = 0.01
    drawer.boxes += [
        _box_between((dx0, dy0, DRAWER_BOTTOM), (dx1, dy1, DRAWER_BOTTOM + t), WOOD),  # bottom
        _box_between((dx0, dy0, DRAWER_BOTTOM), (dx0 + t, dy1, DRAWER_WALL_TOP), WOOD),
        _box_between((dx1 - t, dy0, DRAWER_BOTTOM), (dx1, dy1, DRAWER_WALL_TOP), WOOD),
        _box_between((dx0, dy1 - t, DRAWER_BOTTOM), (dx1, dy1, DRAWER_WALL_TOP), WOOD),
        _box_between((dx0 - 0.02, dy0 - 0.02, DRAWER_BOTTOM - 0.01), (dx1 + 0.02, dy0, -0.045), WOOD),  # front
        _box_between((DRAWER_HANDLE_X - 0.01, DRAWER_HANDLE_Y - 0.01, DRAWER_HANDLE_Z[0]),
                     (DRAWER_HANDLE_X + 0.01, DRAWER_HANDLE_Y + 0.01, DRAWER_HANDLE_Z[1]), GREY),  # handle
    ]
    for pz in (DRAWER_HANDLE_Z[0] + 0.01, DRAWER_HANDLE_Z[1] - 0.01):  # posts between handle and front
        drawer.boxes.append(_box_between((DRAWER_HANDLE_X - 0.008, DRAWER_HANDLE_Y + 0.01, pz - 0.008),
                                         (DRAWER_HANDLE_X + 0.008, dy0 - 0.02, pz + 0.008), GREY))

    button = _Link("button_link", 0.05)
    button.cylinders.append(((0.0, 0.0, 0.0), BUTTON_RADIUS, 0.03, (0.85, 0.85, 0.85, 1.0)))

    switch = _Link("switch_link", 0.05)
    switch.boxes.append(_Box((0.0, 0.0, 0.0), SWITCH_SIZE, (0.2, 0.2, 0.22, 1.0)))

    led = _Link("led_link", 0.0)
    led.boxes.append(_Box((0.0, 0.0, 0.0), (0.03, 0.03, 0.024), LED_OFF_RGBA, collide=False))
    bulb = _Link("lightbulb_link", 0.0)
    bulb.spheres.append(((0.0, 0.0, 0.0), 0.035, BULB_OFF_RGBA))

    links = [base, shelf, door, drawer, button, switch, led, bulb]
    joints = [
        _joint_xml("base__plank", "fixed", "base_link", "plank_link"),
        _joint_xml(DOOR_JOINT, "prismatic", "base_link", "slide_link", origin=(door_half, 0.0, 0.0),
                   axis=(-1, 0, 0), limits=DOOR_RANGE),
        _joint_xml(DRAWER_JOINT, "prismatic", "base_link", "drawer_link", axis=(0, -1, 0),
                   limits=DRAWER_RANGE),
        _joint_xml(BUTTON_JOINT, "prismatic", "base_link", "button_link",
                   origin=(BUTTON_XY[0], BUTTON_XY[1], BUTTON_TOP - 0.015), axis=(0, 0, 1),
                   limits=BUTTON_RANGE),
        _joint_xml(SWITCH_JOINT, "prismatic", "base_link", "switch_link",
                   origin=(SWITCH_X0, SWITCH_Y, SWITCH_SIZE[2] / 2 + 0.005), axis=(1, 0, 0),
                   limits=SWITCH_RANGE),
        _joint_xml("base__led", "fixed", "base_link", "led_link", origin=LED_POSITION),
        _joint_xml("base__lightbulb", "fixed", "base_link", "lightbulb_link", origin=LIGHTBULB_POSITION),
    ]
    text = ('<?xml version="1.0"?><robot name="openhelix_play_table">'
            + "".join(_link_xml(link) for link in links) + "".join(joints) + "</robot>")
    # One element per line: PyBullet's URDF reader fails on very long lines.
    return text.replace("><", ">\n<")


# ----------------------------------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------------------------------

@dataclass
class SceneHandles:
    """PyBullet ids of everything in the scene, looked up by name once after loading."""

    client: int
    robot: int
    table: int
    blocks: dict[str, int]
    table_links: dict[str, int]  # link name -> link index (base_link is -1)
    table_joints: dict[str, int]  # joint name -> joint index


def _name_maps(client: int, body: int) -> tuple[dict[str, int], dict[str, int]]:
    links = {"base_link": -1}
    joints = {}
    for index in range(pb.getNumJoints(body, physicsClientId=client)):
        info = pb.getJointInfo(body, index, physicsClientId=client)
        joints[info[1].decode()] = index
        links[info[12].decode()] = index
    return links, joints


def panda_urdf_text(light_visuals: bool) -> str:
    """pybullet_data's Panda URDF with absolute mesh paths; with ``light_visuals`` its visual meshes
    (about 1 MB of triangles per link) are swapped for the coarse collision meshes, which makes
    TinyRenderer several times faster at the cost of a plainer-looking arm."""
    folder = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    with open(os.path.join(folder, "panda.urdf")) as handle:
        text = handle.read()
    if light_visuals:
        text = text.replace("meshes/visual/", "meshes/collision/")
    return text.replace("package://", folder + "/")


def load_play_table(client: int, light_robot_visuals: bool = True) -> SceneHandles:
    """Build the whole scene into ``client`` (an empty PyBullet world) and return its handles."""
    with tempfile.TemporaryDirectory(prefix="openhelix_table_") as folder:
        path = os.path.join(folder, "play_table.urdf")
        with open(path, "w") as handle:
            handle.write(play_table_urdf())
        table = pb.loadURDF(path, basePosition=(0, 0, 0), useFixedBase=True, physicsClientId=client)
        robot_path = os.path.join(folder, "panda.urdf")
        with open(robot_path, "w") as handle:
            handle.write(panda_urdf_text(light_robot_visuals))
        robot = pb.loadURDF(robot_path, basePosition=ROBOT_BASE_POSITION, baseOrientation=ROBOT_BASE_ORIENTATION,
                            useFixedBase=True, flags=pb.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT,
                            physicsClientId=client)
    blocks = {}
    for index, name in enumerate(BLOCK_NAMES):
        half = [s / 2 for s in BLOCK_SIZES[name]]
        collision = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=client)
        visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=BLOCK_COLOURS[name],
                                      physicsClientId=client)
        blocks[name] = pb.createMultiBody(BLOCK_MASS, collision, visual,
                                          basePosition=(-0.2 + 0.2 * index, -0.1, half[2]),
                                          physicsClientId=client)
        pb.changeDynamics(blocks[name], -1, lateralFriction=0.9, spinningFriction=0.001,
                          rollingFriction=0.0, restitution=0.0, physicsClientId=client)
    links, joints = _name_maps(client, table)
    # Fingers need grip; the rest of the robot keeps the default friction.
    for finger in PANDA_FINGER_JOINTS:
        pb.changeDynamics(robot, finger, lateralFriction=1.6, spinningFriction=0.003,
                          frictionAnchor=True, physicsClientId=client)
    for link in (-1, links["drawer_link"], links["plank_link"], links["slide_link"]):
        pb.changeDynamics(table, link, lateralFriction=0.6, physicsClientId=client)
    return SceneHandles(client, robot, table, blocks, links, joints)
