"""Where the things the scripted expert touches are, per simulator: one ``SceneGeometry`` per backend.

The expert plans in the backend's own world frame. Everything it needs to know about a scene (the
desk's height, the blocks' sizes and order in ``scene_obs``, the drawer's handle, the sliding door's
knob, the button, the switch, the shelf) comes from here, so one expert drives both the embedded
play table (``play_table_geometry``: this project's own constants in ``sim/scene.py``) and the real
calvin_env (``sim/calvin_geometry.py``: measured from calvin_env's own scene at run time).

Joint conventions are CALVIN's on both: the door's joint value moves its knob by ``door_direction``
along x; the drawer opens towards -y as its joint grows; the switch's knob moves along
``switch_direction`` as its joint grows (towards "on").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class SceneGeometry:
    """A scene's geometry in its world frame (metres; z up, x to the robot's right, y away from it)."""

    name: str
    table_top: float  # z of the desk surface
    table_region_x: tuple[float, float]  # where blocks rest on the desk, in front of the cabinet
    table_region_y: tuple[float, float]
    robot_base_x: float
    block_names: tuple[str, ...]  # in scene_obs order
    block_sizes: Mapping[str, Vector3]  # full extents along each block's own x, y, z
    fingertip_below_tcp: float  # how far the closed fingertips reach below the TCP
    # The cabinet: a shelf behind a sliding door.
    shelf_x: tuple[float, float]  # where the shelf ends (the cabinet's side walls rise beyond)
    shelf_y: tuple[float, float]
    shelf_top: float
    slider_left_slot: tuple[float, float]  # (x, y) of a block in the left compartment
    slider_right_slot: tuple[float, float]
    door_covers_left_above: float  # door joint value past which the door covers the left compartment
    cabinet_front_y: float  # a hand beyond this y is in (or over) the cabinet
    cabinet_clear_height: float  # TCP z at which a hand holding a block clears the door and its knob
    shelf_hover_height: float  # TCP z from which the hand comes down to a block on the shelf
    shelf_grasp_tilt: float  # rad the fingers lean away from the robot to take a block from the shelf
    door_span: tuple[float, float]  # x extent of the door at joint value 0
    door_direction: float  # +1 / -1: the door moves along +x / -x as its joint value grows
    door_range: tuple[float, float]
    door_knob_x: float  # knob centre at joint value 0
    door_knob_half_width: float  # along x
    door_knob_y: float  # where the fingertips push the knob sideways
    door_knob_z: float
    reach_over_door: bool  # the forearm passes over the door to reach a shelf spot behind it
    # The drawer, under the desk top at the front, opening towards -y.
    drawer_handle_x: float
    drawer_grip_y: float  # where the fingertips take the handle (drawer closed)
    drawer_handle_z: float
    drawer_grip_yaw_offset: float  # hand yaw relative to the neutral yaw for taking the handle
    drawer_hook: bool  # hook closed fingers behind the handle bar instead of grasping it
    drawer_front_y: float  # front of the tray (drawer closed)
    drawer_slot_x: float  # x of a block dropped into the drawer (clear of its side walls)
    drawer_bottom: float
    drawer_pull: float  # how far open_drawer pulls (the oracle wants 0.12)
    # The button (drives the LED) and the switch (drives the lightbulb).
    button_xy: tuple[float, float]
    button_top: float
    button_travel: float  # pressed past half of this
    switch_knob: Vector3  # knob centre at joint value 0
    switch_direction: Vector3  # unit vector the knob moves along as its joint value grows
    switch_range: tuple[float, float]
    switch_on_contact: Vector3  # fingertips' offset from the knob centre to push it "on"
    switch_off_contact: Vector3  # ... and to push it "off"
    switch_yaw_offset: float  # hand yaw relative to the neutral yaw while pushing the switch
    switch_off_tilt: float  # rad the fingers lean away from the robot to push the switch "off"
    dynamic_strip: tuple[tuple[float, float], tuple[float, float]]  # (x, y) ranges a CALVIN-D block stays in
    camera_max_depth: float  # m from a camera beyond which a depth pixel is background
    cloud_bounds: tuple[Vector3, Vector3] | None  # world box the fused cloud is cropped to (None: no crop)
    workspace_low: Vector3  # the TCP box the bridge accepts and System 1 clips plans to
    workspace_high: Vector3

    def block_size(self, name: str) -> np.ndarray:
        return np.asarray(self.block_sizes[name], dtype=float)

    def door_knob_at(self, door: float) -> float:
        """x of the door's knob at joint value ``door``."""
        return self.door_knob_x + self.door_direction * door

    def door_span_at(self, door: float) -> tuple[float, float]:
        shift = self.door_direction * door
        return self.door_span[0] + shift, self.door_span[1] + shift

    def switch_knob_at(self, value: float) -> np.ndarray:
        return np.asarray(self.switch_knob) + value * np.asarray(self.switch_direction)


@lru_cache(maxsize=1)
def play_table_geometry() -> SceneGeometry:
    """The embedded play table's geometry, from ``sim/scene.py``'s constants."""
    from openhelix_ros.sim import scene as sc
    from openhelix_ros.sim.config import PlayTableConfig
    from openhelix_ros.sim.dynamic import FREE_STRIP_X, FREE_STRIP_Y

    config = PlayTableConfig()
    switch_half = sc.SWITCH_SIZE[0] / 2
    return SceneGeometry(
        name="play_table",
        table_top=0.0,
        table_region_x=sc.TABLE_REGION_X,
        table_region_y=sc.TABLE_REGION_Y,
        robot_base_x=sc.ROBOT_BASE_POSITION[0],
        block_names=sc.BLOCK_NAMES,
        block_sizes=dict(sc.BLOCK_SIZES),
        fingertip_below_tcp=0.012,  # panda_grasptarget sits just above the fingertips
        shelf_x=sc.CABINET_X,
        shelf_y=sc.SHELF_Y,
        shelf_top=sc.SHELF_TOP,
        slider_left_slot=sc.SLIDER_LEFT_SLOT,
        slider_right_slot=sc.SLIDER_RIGHT_SLOT,
        door_covers_left_above=sc.SLIDER_IS_LEFT_ABOVE,
        cabinet_front_y=-0.03,
        cabinet_clear_height=0.37,
        shelf_hover_height=0.37,  # over the low door
        shelf_grasp_tilt=0.0,
        door_span=(0.0, sc.DOOR_WIDTH),
        door_direction=-1.0,
        door_range=sc.DOOR_RANGE,
        door_knob_x=sc.DOOR_WIDTH / 2,
        door_knob_half_width=0.015,
        door_knob_y=sum(sc.DOOR_KNOB_Y) / 2,
        door_knob_z=sc.DOOR_KNOB_Z[1] - 0.02,  # fingertips well below the knob's top, hand above it
        reach_over_door=sc.DOOR_KNOB_Z[1] < 0.19,  # a low door: the forearm crosses above it
        drawer_handle_x=sc.DRAWER_HANDLE_X,
        drawer_grip_y=sc.DRAWER_HANDLE_Y,
        drawer_handle_z=sum(sc.DRAWER_HANDLE_Z) / 2,
        drawer_grip_yaw_offset=0.0,  # fingers close along x around the vertical handle bar
        drawer_hook=False,
        drawer_front_y=sc.DRAWER_Y[0],
        drawer_slot_x=sc.DRAWER_SLOT_X,
        drawer_bottom=sc.DRAWER_BOTTOM,
        drawer_pull=0.19,
        button_xy=sc.BUTTON_XY,
        button_top=sc.BUTTON_TOP,
        button_travel=-sc.BUTTON_RANGE[0],
        switch_knob=(sc.SWITCH_X0, sc.SWITCH_Y, 0.03),
        switch_direction=(1.0, 0.0, 0.0),
        switch_range=sc.SWITCH_RANGE,
        switch_on_contact=(-(switch_half + 0.008), 0.0, 0.0),
        switch_off_contact=(switch_half + 0.008, 0.0, 0.0),
        switch_yaw_offset=-np.pi / 2,  # hand long along y: it passes the knob without touching the desk objects
        switch_off_tilt=0.0,
        dynamic_strip=(FREE_STRIP_X, FREE_STRIP_Y),
        camera_max_depth=2.0,  # both cameras look from under 2 m; the room beyond is background
        cloud_bounds=None,
        workspace_low=tuple(config.workspace_low),
        workspace_high=tuple(config.workspace_high),
    )
