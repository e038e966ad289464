"""CALVIN's dataset layout: one episode_XXXXXXX.npz per frame (rgb_static, rgb_gripper, depth_static,
depth_gripper, robot_obs, scene_obs, actions, rel_actions) and lang_annotations/auto_lang_ann.npy
(info.indx: inclusive (start, end) frame windows; language.ann / language.task per window).

CALVIN's files carry no camera parameters. This reader takes them from `openhelix_cameras.json` in the
split directory: {"static": {"intrinsics": 3x3, "extrinsics": 4x4 camera-to-world}, "gripper":
{"intrinsics": 3x3, "tcp_to_camera": 4x4 camera pose in the tool frame}} (OpenCV camera axes), or per
frame from optional keys `<camera>_intrinsics` / `<camera>_extrinsics` inside the npz (this project's
simulator writes those).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..geometry import euler_xyz_to_matrix, matrix_to_euler_xyz
from ..observation import CameraView, Observation
from .sample import Sample
from .trajectory import discover_keyposes, trajectory_to_next_keypose

CAMERA_FILE = "openhelix_cameras.json"
FRAME_KEYS = ("rgb_static", "rgb_gripper", "depth_static", "depth_gripper", "robot_obs", "scene_obs", "actions",
              "rel_actions")


class CalvinDataError(ValueError):
    """A CALVIN-layout directory that is incomplete or malformed."""


def episode_path(root: Path, frame: int) -> Path:
    return root / f"episode_{frame:07d}.npz"


def tcp_pose_matrix(robot_obs: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = euler_xyz_to_matrix(robot_obs[3:6])
    t[:3, 3] = robot_obs[:3]
    return t


class CalvinDataset:
    """Samples from a CALVIN-layout split directory (e.g. task_D_D/training).

    frames: "keyposes" (3D Diffuser Actor: the window start and every keypose but the last) or "all".
    latent_delay: System 2's image comes from this many frames earlier (clamped to the window start),
    OpenHelix's training-time latent delay."""

    def __init__(self, root, camera_names=("static", "gripper"), frames: str = "keyposes", latent_delay: int = 0,
                 trajectory_length: int = 20, max_windows: int | None = None):
        self.root = Path(root)
        ann_path = self.root / "lang_annotations" / "auto_lang_ann.npy"
        if not ann_path.is_file():
            raise CalvinDataError(f"{ann_path} not found: not a CALVIN-layout split directory")
        try:
            ann = np.load(ann_path, allow_pickle=True).item()
            windows = [tuple(int(x) for x in w) for w in ann["info"]["indx"]]
            texts, tasks = list(ann["language"]["ann"]), list(ann["language"]["task"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CalvinDataError(f"{ann_path}: expected a dict with info.indx and language.ann/task ({exc})") from exc
        if not (len(windows) == len(texts) == len(tasks)):
            raise CalvinDataError(f"{ann_path}: {len(windows)} windows but {len(texts)} texts, {len(tasks)} tasks")
        if frames not in ("keyposes", "all"):
            raise ValueError("frames must be 'keyposes' or 'all'")
        self.camera_names = tuple(camera_names)
        self.latent_delay = int(latent_delay)
        self.trajectory_length = trajectory_length
        cam_path = self.root / CAMERA_FILE
        self.cameras = json.loads(cam_path.read_text()) if cam_path.is_file() else {}
        self.windows = []
        self.index: list[tuple[int, int]] = []
        for w, ((start, end), text, task) in enumerate(zip(windows, texts, tasks, strict=True)):
            if max_windows is not None and w >= max_windows:
                break
            if end <= start:
                raise CalvinDataError(f"{ann_path}: window {w} ({start}, {end}) is empty")
            robot_obs = np.stack([self._load(f, ("robot_obs",))["robot_obs"] for f in range(start, end + 1)])
            actions = np.stack([self._load(f, ("actions",))["actions"] for f in range(start, end + 1)])
            keys = discover_keyposes(robot_obs[:, :3], actions[:, -1])
            self.windows.append({"start": start, "end": end, "text": str(text), "task": str(task),
                                 "robot_obs": robot_obs, "actions": actions, "keyposes": keys})
            local = [0] + [k for k in keys[:-1] if k > 0] if frames == "keyposes" else range(end - start)
            self.index += [(len(self.windows) - 1, int(i)) for i in local]

    @property
    def tasks(self) -> list[str]:
        """The CALVIN task ids of the language windows read, sorted."""
        return sorted({w["task"] for w in self.windows if w["task"]})

    def _load(self, frame: int, keys) -> dict:
        path = episode_path(self.root, frame)
        if not path.is_file():
            raise CalvinDataError(f"{path} missing (a language window refers to frame {frame})")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise CalvinDataError(f"{path}: missing key(s) {missing}")
                return {k: data[k] for k in keys if k in data.files} | {
                    k: data[k] for k in data.files if k.endswith(("_intrinsics", "_extrinsics"))}
        except (OSError, ValueError) as exc:
            raise CalvinDataError(f"{path}: unreadable npz ({exc})") from exc

    def __len__(self) -> int:
        return len(self.index)

    def camera_view(self, name: str, data: dict, robot_obs: np.ndarray) -> CameraView:
        rgb, depth = data[f"rgb_{name}"], data[f"depth_{name}"]
        if f"{name}_intrinsics" in data and f"{name}_extrinsics" in data:
            return CameraView(rgb, depth, data[f"{name}_intrinsics"], data[f"{name}_extrinsics"], name)
        spec = self.cameras.get(name)
        if spec is None:
            raise CalvinDataError(
                f"no parameters for camera '{name}': add {self.root / CAMERA_FILE} or per-frame "
                f"'{name}_intrinsics'/'{name}_extrinsics' keys (CALVIN's files do not carry them)")
        k = np.asarray(spec["intrinsics"], float)
        if "extrinsics" in spec:
            ext = np.asarray(spec["extrinsics"], float)
        else:
            ext = tcp_pose_matrix(robot_obs) @ np.asarray(spec["tcp_to_camera"], float)
        return CameraView(rgb, depth, k, ext, name)

    def __getitem__(self, i: int) -> Sample:
        from ..modeling_system1 import proprio_from_robot_obs

        w_idx, local = self.index[i]
        w = self.windows[w_idx]
        frame = w["start"] + local
        keys = tuple(f"{kind}_{c}" for c in self.camera_names for kind in ("rgb", "depth")) + ("robot_obs",)
        data = self._load(frame, keys)
        robot_obs = data["robot_obs"]
        obs = Observation(cameras=[self.camera_view(c, data, robot_obs) for c in self.camera_names])
        delayed = max(w["start"], frame - self.latent_delay)
        image = data["rgb_static"] if delayed == frame else self._load(delayed, ("rgb_static",))["rgb_static"]
        ro = w["robot_obs"]
        traj = trajectory_to_next_keypose(ro[:, :3], ro[:, 3:6], w["actions"][:, -1], local, w["keyposes"],
                                          self.trajectory_length)
        return Sample(observation=obs, image=image, instruction=w["text"], proprio=proprio_from_robot_obs(robot_obs),
                      rel_positions=traj["rel_positions"], rot6d=traj["rot6d"], gripper_open=traj["gripper_open"],
                      task=w["task"], episode=str(self.root), frame=frame,
                      meta={"keypose": w["start"] + traj["keypose"], "image_frame": delayed})


# ------------------------------------------------------------------------------------------------------
# a synthetic data set in exactly CALVIN's layout (tests, demos, smoke training)


def _look_at(eye, target, up=(0, 0, 1)) -> np.ndarray:
    """Camera-to-world (OpenCV axes) for a camera at eye looking at target."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    t = np.eye(4)
    t[:3, 0], t[:3, 1], t[:3, 2], t[:3, 3] = x, y, z, eye
    return t


def _render(cam_to_world, k, size, block_xy, block_color):
    """A flat table at z = 0 with one coloured square block (5 cm) on it: rgb and metric depth."""
    h = w = size
    u, v = np.meshgrid(np.arange(w) + 0.0, np.arange(h) + 0.0)
    dirs = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    r, o = cam_to_world[:3, :3], cam_to_world[:3, 3]
    world_dirs = dirs @ r.T
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(world_dirs[..., 2] < -1e-6, -o[2] / world_dirs[..., 2], 0.0)
    hit = o + world_dirs * depth[..., None]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = (150, 120, 90)
    checker = ((np.floor(hit[..., 0] * 10) + np.floor(hit[..., 1] * 10)) % 2 == 0)
    rgb[checker] = (170, 140, 110)
    inside = (np.abs(hit[..., 0] - block_xy[0]) < 0.025) & (np.abs(hit[..., 1] - block_xy[1]) < 0.025)
    rgb[inside & (depth > 0)] = block_color
    rgb[depth <= 0] = 0
    return rgb, depth.astype(np.float32)


def write_calvin_episodes(root, num_windows: int = 4, frames_per_window: int = 24, seed: int = 0,
                          static_size: int = 200, gripper_size: int = 84) -> Path:
    """Writes a small synthetic data set in CALVIN's layout: per window, the tool moves above a block,
    closes the gripper, lifts it; instructions name the block's colour. Includes openhelix_cameras.json."""
    root = Path(root)
    (root / "lang_annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k_static = np.array([[static_size * 1.2, 0, static_size / 2], [0, static_size * 1.2, static_size / 2], [0, 0, 1]])
    k_grip = np.array([[gripper_size * 0.8, 0, gripper_size / 2], [0, gripper_size * 0.8, gripper_size / 2], [0, 0, 1]])
    static_ext = _look_at((0.0, -0.9, 0.9), (0.0, 0.0, 0.0))
    tcp_to_cam = np.eye(4)
    tcp_to_cam[:3, 3] = (0.0, 0.05, 0.0)  # the wrist camera sits 5 cm off the tool point, looking along tool z
    colors = {"red": (200, 30, 30), "blue": (30, 30, 200), "pink": (230, 120, 180)}
    indx, texts, tasks = [], [], []
    frame = 0
    for w in range(num_windows):
        color = list(colors)[w % 3]
        block = rng.uniform([-0.2, -0.15], [0.2, 0.15])
        start_pos = np.r_[rng.uniform(-0.2, 0.2, 2), 0.35]
        grasp = np.r_[block, 0.03]
        lift = grasp + np.r_[0, 0, 0.2]
        n1 = frames_per_window // 2
        n2 = frames_per_window - n1
        path = np.concatenate([start_pos + (grasp - start_pos) * np.linspace(0, 1, n1)[:, None],
                               grasp + (lift - grasp) * np.linspace(0, 1, n2)[:, None]])
        yaw0 = rng.uniform(-0.5, 0.5)
        yaws = np.linspace(yaw0, yaw0 + 0.3, frames_per_window)
        grip_action = np.where(np.arange(frames_per_window) < n1 - 1, 1.0, -1.0)  # close on reaching the block
        start = frame
        for i in range(frames_per_window):
            euler = np.array([np.pi, 0.0, yaws[i]])  # tool z pointing down
            robot_obs = np.zeros(15)
            robot_obs[:3], robot_obs[3:6] = path[i], euler
            robot_obs[6] = 0.08 if grip_action[i] > 0 else 0.03
            robot_obs[7:14] = rng.normal(0, 0.1, 7)
            robot_obs[14] = grip_action[i - 1] if i > 0 else 1.0
            held = path[i][:2] if i >= n1 else block
            rgb_s, depth_s = _render(static_ext, k_static, static_size, held, colors[color])
            grip_ext = tcp_pose_matrix(robot_obs) @ tcp_to_cam
            rgb_g, depth_g = _render(grip_ext, k_grip, gripper_size, held, colors[color])
            nxt = path[min(i + 1, frames_per_window - 1)]
            actions = np.r_[nxt, euler, grip_action[i]]
            rel = np.r_[np.clip((nxt - path[i]) / 0.02, -1, 1), 0, 0, 0, grip_action[i]]
            scene_obs = np.zeros(24)
            scene_obs[6:9] = np.r_[held, 0.025]
            np.savez_compressed(episode_path(root, frame), rgb_static=rgb_s, rgb_gripper=rgb_g, depth_static=depth_s,
                                depth_gripper=depth_g, robot_obs=robot_obs, scene_obs=scene_obs, actions=actions,
                                rel_actions=rel)
            frame += 1
        indx.append((start, frame - 1))
        texts.append(f"lift the {color} block")
        tasks.append(f"lift_{color}_block_table")
    ann = {"info": {"indx": indx, "episodes": []},
           "language": {"ann": texts, "task": tasks, "emb": np.zeros((len(texts), 1, 384), np.float32)}}
    np.save(root / "lang_annotations" / "auto_lang_ann.npy", ann, allow_pickle=True)
    cams = {"static": {"intrinsics": k_static.tolist(), "extrinsics": static_ext.tolist()},
            "gripper": {"intrinsics": k_grip.tolist(), "tcp_to_camera": tcp_to_cam.tolist()}}
    (root / CAMERA_FILE).write_text(json.dumps(cams, indent=2))
    return root


__all__ = ["CalvinDataset", "CalvinDataError", "write_calvin_episodes", "matrix_to_euler_xyz"]
