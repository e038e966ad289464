"""openhelix view --bag: a recorded bag's messages reach the viewer as the live graph's would, the newest
of each topic at the slider's time."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from openhelix_ros.common import graph
from openhelix_ros.viewer.core import ViewerCore
from openhelix_ros.viewer.node import MessageFeed
from openhelix_ros.viewer.replay import BagReplay
from openhelix_training.data.rosbag import write_synthetic_bag


def test_seeking_shows_the_newest_message_of_each_topic_at_that_time(tmp_path):
    xyz, _, _ = write_synthetic_bag(tmp_path / "bag", frames=12)
    core = ViewerCore(heavy_period=0.0)
    replay = BagReplay(tmp_path / "bag", MessageFeed(core))
    assert replay.messages() == {graph.POINTS: 12, graph.STATIC_IMAGE: 12, graph.INSTRUCTION: 1,
                                 graph.EE_TRAJECTORY: 11}
    assert replay.duration == pytest.approx(11 * 0.033 + 3e-9, abs=1e-6)
    assert replay.seek(0.0) == 1  # the instruction; frame 0's cloud, image and plan follow 1, 2 and 4 ns later
    assert replay.seek(1e-6) == 3
    assert core.instruction == "open the drawer" and core.task == "open_drawer"
    frame = core.frame(0.0)
    np.testing.assert_allclose(np.sort(frame.points[0], axis=0), np.sort(xyz, axis=0), atol=1e-6)
    # Frame 6 (0.198 s): its command leads the tool to x = 0.01 * (6 + 2), gripper closed from frame 6 on.
    replay.seek(6 * 0.033 + 1e-6)
    frame = core.frame(1.0)
    positions, gripper = frame.trajectory
    np.testing.assert_allclose(positions[0], [0.08, 0.0, 0.3], atol=1e-6)
    assert gripper[0] == -1.0 and frame.images["static"][0, 0, 0] == 6
    assert replay.seek(6 * 0.033 + 1e-6) == 0  # nothing new at the same time
    replay.seek(0.001)  # backwards: frame 0's plan
    np.testing.assert_allclose(core.frame(3.0).trajectory[0][0], [0.02, 0.0, 0.3], atol=1e-6)


def test_a_path_that_is_no_bag_is_refused_by_name(tmp_path):
    done = subprocess.run([sys.executable, "-m", "openhelix_ros.cli.main", "view", "--bag", str(tmp_path),
                           "--port", "18093", "--no-robot"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{tmp_path} is not a rosbag2 bag (no metadata.yaml)" in done.stderr
