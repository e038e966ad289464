"""What the viewer shows, without ROS or a browser: the newest of every input, and, once a draw period,
the parts that changed since they were last drawn.

Inputs are plain arrays and numbers (node.py converts messages; replay.py feeds a bag the same way) with
the wall-clock time they arrived. Nothing is queued: a new cloud replaces the undrawn one, so a slow
browser or a fast graph costs the viewer one copy per input, never a backlog, and the graph never waits
for it. Heavy parts (the cloud, the camera images) have their own, longer redraw period.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from openhelix_ros.common.timing import latent_step_for_plan

# Limits on what one frame sends to the browser; larger inputs are thinned, not refused.
MAX_CLOUD_POINTS = 30_000
RATE_WINDOW_S = 5.0  # rates are arrivals over the last this many seconds


@dataclass
class RateMeter:
    """Arrivals per second over the last ``window`` seconds of wall-clock time."""

    window: float = RATE_WINDOW_S
    _times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2048))

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-9)
        return (len(self._times) - 1) / span if span < self.window else len(self._times) / self.window


@dataclass
class Progress:
    """An evaluation's place, as evaluation/progress carries it (0-based indices)."""

    run_name: str
    chain_index: int
    num_chains: int
    subtask_index: int
    task: str
    instruction: str
    completed_in_chain: int
    average_length: float


@dataclass
class Frame:
    """What to redraw; None means unchanged since the last frame."""

    points: tuple[np.ndarray, np.ndarray] | None = None  # (N, 3) float32 xyz, (N, 3) uint8 rgb
    joints: dict[str, float] | None = None
    ee_pose: tuple[np.ndarray, np.ndarray] | None = None  # position, quaternion (x, y, z, w)
    trajectory: tuple[np.ndarray, np.ndarray] | None = None  # (N, 3) positions, (N,) gripper (> 0 open)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8
    status: str | None = None  # markdown

    @property
    def empty(self) -> bool:
        return (self.points is None and self.joints is None and self.ee_pose is None and self.trajectory is None
                and not self.images and self.status is None)


def thin_cloud(xyz: np.ndarray, rgb: np.ndarray, max_points: int = MAX_CLOUD_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` of a cloud, an even stride through it (the same points every frame for a
    cloud of a fixed layout, so the view does not shimmer)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    if len(xyz) != len(rgb):
        raise ValueError(f"cloud has {len(xyz)} points but {len(rgb)} colours")
    keep = np.all(np.isfinite(xyz), axis=1)
    xyz, rgb = xyz[keep], rgb[keep]
    if len(xyz) > max_points:
        index = np.linspace(0, len(xyz) - 1, max_points).astype(np.int64)
        xyz, rgb = xyz[index], rgb[index]
    return np.ascontiguousarray(xyz), np.ascontiguousarray(rgb)


class ViewerCore:
    """The newest inputs and the redraw schedule. Not thread-safe: the node calls it under one lock."""

    def __init__(self, control_rate: float = 30.0, heavy_period: float = 0.2,
                 latent_period_steps: int | None = None, max_cloud_points: int = MAX_CLOUD_POINTS) -> None:
        if not control_rate > 0:
            raise ValueError(f"control_rate must be > 0 Hz, got {control_rate}")
        if not heavy_period >= 0:
            raise ValueError(f"heavy_period must be >= 0 s, got {heavy_period}")
        self.control_rate = float(control_rate)
        self.heavy_period = float(heavy_period)
        self.latent_period_steps = latent_period_steps  # N of Asy(N); None until System 2 says
        self.max_cloud_points = int(max_cloud_points)
        self._points: tuple[np.ndarray, np.ndarray] | None = None
        self._joints: dict[str, float] = {}
        self._ee_pose: tuple[np.ndarray, np.ndarray] | None = None
        self._trajectory: tuple[np.ndarray, np.ndarray] | None = None
        self._images: dict[str, np.ndarray] = {}
        self._dirty: set[str] = set()
        self._heavy_drawn_at = -math.inf
        self.instruction = ""
        self.task = ""
        self.progress: Progress | None = None
        self.latent_age_steps: int | None = None
        self.latent_inference_time: float | None = None
        self.plan_inference_time: float | None = None
        self.plans = RateMeter()
        self.latents = RateMeter()
        self.observations = RateMeter()
        self.received = collections.Counter()
        self.refused = collections.Counter()  # input -> inputs that could not be shown
        self.last_refusal = ""
        self._status_drawn = None

    # -- inputs --------------------------------------------------------------------------------------

    def on_points(self, xyz: np.ndarray, rgb: np.ndarray, now: float) -> None:
        self._points = thin_cloud(xyz, rgb, self.max_cloud_points)
        self._mark("points")

    def on_joints(self, positions: dict[str, float], now: float) -> None:
        self._joints.update({name: float(value) for name, value in positions.items() if math.isfinite(value)})
        self.observations.tick(now)
        self._mark("joints")

    def on_ee_pose(self, position: np.ndarray, quaternion_xyzw: np.ndarray, now: float) -> None:
        self._ee_pose = (np.asarray(position, dtype=np.float64), np.asarray(quaternion_xyzw, dtype=np.float64))
        self._mark("ee_pose")

    def on_trajectory(self, positions: np.ndarray, gripper: np.ndarray, stamp_ns: int, latent_stamp_ns: int,
                      inference_time: float, now: float) -> None:
        """A plan; its latent's age is the steps between the observation it answers and the one System 2
        encoded for it (a zero latent stamp: a plan made without a latent, such as the scripted expert's)."""
        self._trajectory = (np.asarray(positions, dtype=np.float32), np.asarray(gripper, dtype=np.float32))
        self.latent_age_steps = (round((int(stamp_ns) - int(latent_stamp_ns)) * self.control_rate / 1e9)
                                 if latent_stamp_ns else None)
        self.plan_inference_time = float(inference_time)
        self.plans.tick(now)
        self._mark("trajectory")

    def on_image(self, camera: str, rgb: np.ndarray, now: float) -> None:
        self._images[camera] = np.asarray(rgb, dtype=np.uint8)
        self._mark("image:" + camera)

    def on_latent(self, inference_time: float, now: float) -> None:
        self.latent_inference_time = float(inference_time)
        self.latents.tick(now)
        self._mark("status")

    def on_instruction(self, text: str, task: str, now: float) -> None:
        self.instruction, self.task = text, task
        self._mark("status")

    def on_progress(self, progress: Progress, now: float) -> None:
        self.progress = progress
        self.instruction, self.task = progress.instruction or self.instruction, progress.task or self.task
        self._mark("status")

    def set_latent_period(self, steps: int) -> None:
        """System 2's N of Asy(N), once it is known."""
        self.latent_period_steps = int(steps)
        self._mark("status")

    def on_refused(self, what: str, reason: str) -> None:
        """An input that could not be shown (a malformed message): counted and said in the status."""
        self.refused[what] += 1
        self.last_refusal = f"{what}: {reason}"[:200]
        self._mark("status")

    def _mark(self, part: str) -> None:
        self._dirty.add(part)

    # -- output --------------------------------------------------------------------------------------

    def frame(self, now: float) -> Frame:
        """The parts to redraw at ``now``; the cloud and images at most once a heavy period."""
        out = Frame()
        if "joints" in self._dirty:
            out.joints = dict(self._joints)
        if "ee_pose" in self._dirty:
            out.ee_pose = self._ee_pose
        if "trajectory" in self._dirty:
            out.trajectory = self._trajectory
        heavy = now - self._heavy_drawn_at >= self.heavy_period
        if heavy:
            if "points" in self._dirty:
                out.points = self._points
            out.images = {name: image for name, image in self._images.items() if "image:" + name in self._dirty}
            if out.points is not None or out.images:
                self._heavy_drawn_at = now
        self._dirty -= {"joints", "ee_pose", "trajectory"}
        if out.points is not None:
            self._dirty.discard("points")
        self._dirty -= {"image:" + name for name in out.images}
        status = self.status_markdown(now)
        if status != self._status_drawn:  # rates change with time, so this is checked every frame
            out.status = self._status_drawn = status
        self._dirty.discard("status")
        return out

    def latent_window(self) -> tuple[int, int] | None:
        """The latent ages (steps) Asy(N) allows at a plan: N to 2N - 1 (0 to 0 for N = 0), None while
        N is unknown."""
        n = self.latent_period_steps
        if n is None:
            return None
        if n == 0:
            return 0, 0
        # latent_step_for_plan is the rule System 1 follows; the ages it yields over a period.
        ages = [step - latent_step_for_plan(step, n) for step in range(2 * n, 3 * n)]
        return min(ages), max(ages)

    def status_markdown(self, now: float) -> str:
        lines = [f"**Instruction:** {self.instruction or '(none yet)'}" + (f" `{self.task}`" if self.task else "")]
        window = self.latent_window()
        n = self.latent_period_steps
        schedule = "unknown" if n is None else ("every step" if n == 0 else f"Asy({n})")
        if self.latent_age_steps is None:
            lines.append(f"**Latent age:** (no latent yet), {schedule}")
        else:
            inside = window is None or window[0] <= self.latent_age_steps <= window[1]
            window_text = "" if window is None else f", window {window[0]}–{window[1]}"
            lines.append(f"**Latent age:** {self.latent_age_steps} steps ({schedule}{window_text})"
                         + ("" if inside else " — outside the window"))
        s1, s2, observed = self.plans.rate(now), self.latents.rate(now), self.observations.rate(now)
        s1_time = f", {self.plan_inference_time * 1e3:.0f} ms a plan" if self.plan_inference_time else ""
        s2_time = f", {self.latent_inference_time * 1e3:.0f} ms a latent" if self.latent_inference_time else ""
        lines.append(f"**System 1:** {s1:.1f} plans/s{s1_time}  \n**System 2:** {s2:.2f} latents/s{s2_time}  \n"
                     f"**Robot:** {observed:.1f} joint states/s")
        if self.progress is not None:
            p = self.progress
            lines.append(f"**Evaluation** {p.run_name}: chain {p.chain_index + 1}/{p.num_chains}, "
                         f"subtask {p.subtask_index + 1} `{p.task}`, {p.completed_in_chain} done in this chain, "
                         f"avg. len {p.average_length:.2f}")
        if self.refused:
            counts = ", ".join(f"{what} {count}" for what, count in sorted(self.refused.items()))
            lines.append(f"**Not shown:** {counts} (last: {self.last_refusal})")
        return "\n\n".join(lines)
