"""Per-backend scene geometry (sim/geometry.py, sim/backends.py): the play table's, in CI; calvin's is
measured from calvin_env and checked in test_calvin_backend.py where it is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openhelix_ros.common.graphs import parameter_file_values
from openhelix_ros.sim import scene as sc
from openhelix_ros.sim.backends import scene_geometry, workspace
from openhelix_ros.sim.geometry import play_table_geometry

CONFIG = Path(__file__).resolve().parents[3] / "config"


def test_the_play_table_geometry_follows_its_joints_as_the_simulator_does():
    geometry = play_table_geometry()
    assert scene_geometry("embedded") is geometry and geometry.block_names == sc.BLOCK_NAMES
    # The door's joint value moves it (and its knob) left; at the far end the knob is 0.17 m left of centre.
    assert geometry.door_knob_at(0.0) == pytest.approx(sc.DOOR_WIDTH / 2)
    assert geometry.door_knob_at(sc.DOOR_RANGE[1]) == pytest.approx(-sc.DOOR_WIDTH / 2)
    assert geometry.door_span_at(sc.DOOR_RANGE[1]) == pytest.approx((-sc.DOOR_WIDTH, 0.0))
    np.testing.assert_allclose(geometry.switch_knob_at(0.05), [sc.SWITCH_X0 + 0.05, sc.SWITCH_Y, 0.03])
    assert geometry.block_size("block_blue").tolist() == list(sc.BLOCK_SIZES["block_blue"])


def test_the_workspace_box_lives_in_one_place_and_the_parameter_files_agree():
    low, high = workspace("embedded")
    for name in ("calvin_bridge", "system1", "arm_interface"):
        values = parameter_file_values(CONFIG / f"{name}.yaml")
        assert values["workspace_low"] == pytest.approx(low) and values["workspace_high"] == pytest.approx(high), name


def test_unknown_backends_and_scenes_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown backend 'gazebo'; choose one of embedded, calvin"):
        scene_geometry("gazebo")
    with pytest.raises(ValueError, match="one scene, play_table"):
        scene_geometry("embedded", "calvin_scene_A")
