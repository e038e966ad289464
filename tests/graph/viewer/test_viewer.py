"""openhelix view against a running graph, checked through viser's server API and in a real browser
(headless Chromium): the cloud, the arm and the plan exist, update, and each shows in the screenshot."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from openhelix_msgs.msg import EETrajectory
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import trajectory_to_msg
from openhelix_ros.common.node_utils import TRAJECTORY_QOS
from openhelix_ros.common.processes import wait_for
from openhelix_ros.viewer.browser import find_chromium, screenshot

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="no Chromium (Debian's chromium package; .ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 40).sum())


def test_viewer_shows_the_cloud_robot_and_plan_of_a_running_graph(peer, processes, tmp_path):
    import viser
    from rclpy.executors import SingleThreadedExecutor

    from openhelix_ros.sim.scene import ROBOT_BASE_POSITION
    from openhelix_ros.viewer.core import ViewerCore
    from openhelix_ros.viewer.node import ViewerNode
    from openhelix_ros.viewer.robot import UrdfModel, default_urdf
    from openhelix_ros.viewer.scene import ViewerScene, base_matrix

    bridge = processes.node("calvin_bridge", "clock_mode:=realtime", "render:=true")
    server = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    scene = ViewerScene(server, UrdfModel(default_urdf()), base_matrix("{},{},{},90".format(*ROBOT_BASE_POSITION)),
                        on_instruction=lambda text: "")
    core = ViewerCore(heavy_period=0.2)
    viewer = ViewerNode(core, scene, draw_rate=10.0)
    executor = SingleThreadedExecutor()
    executor.add_node(viewer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    plan_pub = peer.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
    # A plan down to the desk in front of the arm, the second half with the gripper closed.
    positions = np.linspace([0.05, -0.25, 0.45], [0.15, -0.05, 0.25], 12)
    gripper = np.where(np.arange(12) < 6, 1.0, -1.0)
    down = np.tile([1.0, 0.0, 0.0, 0.0], (12, 1))
    sent = {"n": 0}

    def publish_plan() -> None:
        sent["n"] += 1
        plan_pub.publish(trajectory_to_msg(positions, down, gripper, 1 / 30, stamp=peer.get_clock().now().nanoseconds,
                                           sequence=sent["n"]))

    timer = peer.create_timer(0.5, publish_plan)
    hand = next(handle for link, _, handle in scene.links if link == "panda_hand")
    try:
        wait_for(peer, lambda: scene.drawn["cloud"] and scene.drawn["robot"], 90, "the viewer's first cloud and arm",
                 [bridge])
        first_hand = np.array(hand.position)
        wait_for(peer, lambda: scene.drawn["plan"], 30, "the plan in the viewer", [bridge])
        # Server API: every object exists with real contents, and they update as the graph runs.
        assert scene.points.visible and len(scene.points.points) > 1000
        assert scene.points.colors.shape == (len(scene.points.points), 3)
        assert all(handle.visible for _, _, handle in scene.links) and scene.ee.visible
        np.testing.assert_allclose(scene.waypoints.points, positions, atol=1e-6)
        assert scene.waypoints.colors[0].tolist() != scene.waypoints.colors[-1].tolist()  # open vs closed
        wait_for(peer, lambda: np.linalg.norm(np.array(hand.position) - first_hand) > 0.03, 60,
                 "the arm to move along the plan (the hand's mesh with it)", [bridge])
        wait_for(peer, lambda: core.received[graph.EE_TRAJECTORY] >= 3, 30, "three plans", [bridge])
        assert 0.5 < core.plans.rate(time.monotonic()) < 20  # published at 2 Hz
        assert "Latent age:** (no latent yet)" in scene.status.content  # a plan made without a latent

        url = f"http://127.0.0.1:{server.get_port()}/"
        # Redraws stop for the screenshots, so that the four differ only by what is hidden.
        viewer.draw_timer.cancel()
        shots = {}
        for hidden in (None, "cloud", "robot", "plan"):
            for part in ("cloud", "robot", "plan"):
                scene.set_visible(part, part != hidden)
            shots[hidden] = np.asarray(Image.open(screenshot(url, tmp_path / f"without_{hidden}.png",
                                                             settle=4.0)).convert("RGB"))
        full = shots[None]
        # Not blank and not an error page: the 3D view fills with scene colours, not one background.
        middle = full[150:650, 320:940]
        assert (np.abs(middle.astype(int) - 255).max(axis=2) > 30).mean() > 0.05, "the scene is (almost) blank"
        assert len(np.unique(middle.reshape(-1, 3), axis=0)) > 200
        # The GUI panel (right) shows the status and both camera images: the static camera's picture of
        # the brown table is the only large block of many colours there.
        panel = full[250:470, 950:1160]
        assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 200, "the GUI panel shows no camera image"
        for part in ("cloud", "robot", "plan"):
            changed = _changed_pixels(full, shots[part])
            assert changed > 150, f"hiding the {part} changed only {changed} pixels of the screenshot"
        assert bridge.alive
    finally:
        timer.cancel()
        executor.shutdown()
        viewer.destroy_node()
        server.stop()
