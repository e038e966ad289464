"""Draws the core's frames into a viser server: the cloud, the arm's link meshes, the end-effector frame,
the newest plan coloured by gripper command, both camera images and a status panel, plus a text box that
hands an instruction to a callback. No ROS here; node.py owns the subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from openhelix_ros.arm.kinematics import matrix_to_pose, pose_matrix
from openhelix_ros.evaluation.video import CLOSED, OPEN
from openhelix_ros.viewer.core import Frame
from openhelix_ros.viewer.robot import UrdfModel

CAMERAS = ("static", "gripper")
PARTS = ("cloud", "robot", "plan")  # each with a Show checkbox
POINT_SIZE = 0.006  # m: the fused cloud's spacing on the table


def _wxyz(quaternion_xyzw) -> np.ndarray:
    # conversions.quat_xyzw_to_wxyz does this too, but that module loads ROS message types and this one
    # stays ROS-free (the viewer's unit tests run without rclpy).
    x, y, z, w = np.asarray(quaternion_xyzw, dtype=np.float64)
    return np.array([w, x, y, z])


class ViewerScene:
    """The viser scene and panel of one viewer; ``draw`` applies a Frame (call it from one thread)."""

    def __init__(self, server, robot: UrdfModel | None, base: np.ndarray | None = None,
                 on_instruction: Callable[[str], str] | None = None) -> None:
        self.server = server
        self.robot = robot
        self.base = np.eye(4) if base is None else np.asarray(base, dtype=np.float64)
        server.scene.set_up_direction("+z")
        # Looking at the desk from the front right, as the static camera roughly does.
        server.initial_camera.position = (0.75, -1.15, 0.95)
        server.initial_camera.look_at = (0.0, -0.05, 0.25)
        server.scene.add_grid("/grid", width=2.0, height=2.0, cell_size=0.1, section_size=0.5)
        self.points = server.scene.add_point_cloud("/points", points=np.zeros((1, 3), np.float32),
                                                   colors=np.zeros((1, 3), np.uint8), point_size=POINT_SIZE,
                                                   point_shape="square", visible=False)
        self.ee = server.scene.add_frame("/ee_pose", axes_length=0.08, axes_radius=0.004, visible=False)
        self.trajectory = server.scene.add_line_segments("/trajectory", points=np.zeros((1, 2, 3), np.float32),
                                                         colors=np.zeros((1, 2, 3), np.uint8), thickness=6.0,
                                                         thickness_units="screen", visible=False)
        self.waypoints = server.scene.add_point_cloud("/trajectory/waypoints", points=np.zeros((1, 3), np.float32),
                                                      colors=np.zeros((1, 3), np.uint8), point_size=0.02, precision="float32",
                                                      point_shape="circle", visible=False)
        # One handle a visual, placed at its link's pose times the visual's origin on every joint update.
        self.links: list[tuple[str, np.ndarray, object]] = []
        self.drawn = dict.fromkeys(PARTS, False)
        if robot is not None:
            for index, (link, visual, mesh) in enumerate(robot.meshes()):
                handle = server.scene.add_mesh_trimesh(f"/robot/{link}_{index}", mesh=mesh, visible=False)
                self.links.append((link, visual.origin, handle))
        self.status = server.gui.add_markdown("Waiting for the graph…")
        self.shown = {part: server.gui.add_checkbox(f"Show {part}", initial_value=True) for part in PARTS}
        for part, checkbox in self.shown.items():
            checkbox.on_update(lambda _event, part=part: self.set_visible(part, self.shown[part].value))
        self.images = {name: server.gui.add_image(np.zeros((8, 8, 3), np.uint8), label=f"{name} camera",
                                                  format="jpeg", visible=False) for name in CAMERAS}
        self.instruction_box = self.send_button = self.sent = None
        if on_instruction is not None:
            self.instruction_box = server.gui.add_text("Instruction", initial_value="",
                                                       hint="sent on the instruction topic, as openhelix say")
            self.send_button = server.gui.add_button("Send instruction")
            self.sent = server.gui.add_markdown("")

            @self.send_button.on_click
            def _(event) -> None:
                self.sent.content = on_instruction(self.instruction_box.value)

    def draw(self, frame: Frame) -> None:
        if frame.empty:
            return
        with self.server.atomic():  # one update to the browser, not one per object
            if frame.points is not None:
                xyz, rgb = frame.points
                if len(xyz):
                    self.points.points, self.points.colors = xyz, rgb
                self.points.visible = bool(len(xyz)) and self._on("cloud")
            if frame.joints is not None and self.links:
                poses = self.robot.link_poses(frame.joints, self.base)
                for link, origin, handle in self.links:
                    position, quaternion = matrix_to_pose(poses[link] @ origin)
                    handle.position, handle.wxyz = position, _wxyz(quaternion)
                    handle.visible = self._on("robot")
            if frame.ee_pose is not None:
                self.ee.position, self.ee.wxyz = frame.ee_pose[0], _wxyz(frame.ee_pose[1])
                self.ee.visible = self._on("robot")
            if frame.trajectory is not None:
                self._draw_trajectory(*frame.trajectory)
            for name, image in frame.images.items():
                if name in self.images:
                    self.images[name].image = image
                    self.images[name].visible = True
            if frame.status is not None:
                self.status.content = frame.status
        # Marked once drawn, so a reader of these flags (set_visible, a test) sees the objects' contents.
        self.drawn["cloud"] |= frame.points is not None and len(frame.points[0]) > 0
        self.drawn["robot"] |= frame.joints is not None or frame.ee_pose is not None
        self.drawn["plan"] |= frame.trajectory is not None

    def _on(self, part: str) -> bool:
        return bool(self.shown[part].value)

    def set_visible(self, part: str, visible: bool) -> None:
        """Show or hide the cloud, the robot (its links and the end-effector frame) or the plan."""
        self.shown[part].value = bool(visible)
        handles = {"cloud": [self.points], "robot": [handle for _, _, handle in self.links] + [self.ee],
                   "plan": [self.trajectory, self.waypoints]}[part]
        with self.server.atomic():
            for handle in handles:
                # Drawn objects only: one not drawn yet (no message) stays hidden.
                handle.visible = bool(visible) and self.drawn[part]

    def _draw_trajectory(self, positions: np.ndarray, gripper: np.ndarray) -> None:
        colours = np.where(np.asarray(gripper)[:, None] > 0, np.array(OPEN, np.uint8), np.array(CLOSED, np.uint8))
        self.waypoints.points, self.waypoints.colors = positions.astype(np.float32), colours.astype(np.uint8)
        self.waypoints.visible = self._on("plan")
        if len(positions) >= 2:
            self.trajectory.points = np.stack([positions[:-1], positions[1:]], axis=1).astype(np.float32)
            self.trajectory.colors = np.stack([colours[:-1], colours[:-1]], axis=1).astype(np.uint8)
            self.trajectory.visible = self._on("plan")


def base_matrix(text: str) -> np.ndarray:
    """``x,y,z[,yaw_deg]`` (the robot's base in world) as a 4x4 transform; ValueError says the format."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (3, 4) or not np.all(np.isfinite(values)):
        raise ValueError(f"--base must be x,y,z or x,y,z,yaw_degrees (metres, degrees), got {text!r}")
    yaw = np.radians(values[3]) if len(values) == 4 else 0.0
    return pose_matrix(values[:3], [0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
