"""Episode videos: the static camera's frames of a chain as an MP4, with what the policy was doing burned
in: the chain and subtask, the instruction, a mark for each subtask done or failed, the latent's age
against its Asy(N) window, and the newest predicted trajectory projected into the image, each waypoint
coloured by its gripper command (green open, red closed).

No ROS here: the caller (the evaluator) hands over frames and captions; drawing and
encoding run in a background thread behind a bounded queue, so a caller on the lockstep path only copies
a frame into the queue and never waits for the encoder. When the encoder falls a whole queue behind,
frames are dropped and counted, never the graph slowed. Encoding uses the static ffmpeg (libx264) that
the imageio-ffmpeg wheel carries.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_FPS = 30  # the control rate: one frame an env step plays an episode at its real speed
MIN_WIDTH = 400  # frames are scaled up (nearest) to at least this, so the burned-in text is readable
BAR = 36  # pixels of caption above and below the image
BLOCK = 16  # x264 wants sizes divisible by this; frames are padded to it
OPEN, CLOSED = (40, 200, 60), (220, 40, 40)  # gripper command colours
DONE, FAILED, PENDING = (40, 200, 60), (220, 40, 40), (110, 110, 110)


@dataclass
class Caption:
    """What one frame says. ``marks`` has one entry a subtask of the chain: True done, False failed,
    None not reached (yet)."""

    chain: int  # 0-based
    chains: int
    subtask: int  # 0-based
    task: str = ""
    instruction: str = ""
    marks: list[bool | None] = field(default_factory=list)
    step: int | None = None
    latent_age_steps: int | None = None
    latent_period_steps: int | None = None  # N of Asy(N); None or 0: synchronous or realtime


@dataclass
class Projection:
    """A pinhole camera: ``intrinsics`` K (3x3, pixels) and ``camera_to_world`` (4x4; the camera looks
    along its +z, x right, y down, as ROS optical frames and this project's cameras do)."""

    intrinsics: np.ndarray
    camera_to_world: np.ndarray

    def pixels(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixel coordinates of world points and a mask of those in front of the camera."""
        points = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        world_to_camera = np.linalg.inv(np.asarray(self.camera_to_world, dtype=np.float64))
        in_camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        depth = in_camera[:, 2]
        front = depth > 1e-6
        uvw = in_camera @ np.asarray(self.intrinsics, dtype=np.float64).T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[:, :2] / np.where(front, depth, 1.0)[:, None]
        return uv, front


@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # parsed once a size, not once a frame


def annotate(rgb: np.ndarray, caption: Caption, trajectory: np.ndarray | None = None,
             gripper: np.ndarray | None = None, projection: Projection | None = None) -> np.ndarray:
    """One video frame: ``rgb`` (H, W, 3 uint8) scaled up, the trajectory (N, 3 world positions, with N
    gripper commands, > 0 open) drawn through ``projection`` when both are given, and ``caption`` in a
    bar above and below. The size depends only on the image's, padded to a multiple of 16."""
    from PIL import Image, ImageDraw

    image = np.asarray(rgb, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"a video frame must be an (H, W, 3) image, got shape {image.shape}")
    scale = max(1, -(-MIN_WIDTH // image.shape[1]))
    height, width = image.shape[0] * scale, image.shape[1] * scale
    frame_w = -(-width // BLOCK) * BLOCK
    frame_h = -(-(height + 2 * BAR) // BLOCK) * BLOCK
    canvas = Image.new("RGB", (frame_w, frame_h), (16, 16, 16))
    canvas.paste(Image.fromarray(image).resize((width, height), Image.NEAREST), (0, BAR))
    draw = ImageDraw.Draw(canvas)

    if trajectory is not None and projection is not None and len(trajectory):
        uv, front = projection.pixels(trajectory)
        uv = uv * scale + np.array([0.0, BAR])
        opens = np.ones(len(uv), bool) if gripper is None else np.asarray(gripper).reshape(-1)[: len(uv)] > 0
        for i in range(len(uv)):
            if not front[i] or not np.all(np.isfinite(uv[i])):
                continue
            colour = OPEN if opens[i] else CLOSED
            if i + 1 < len(uv) and front[i + 1] and np.all(np.isfinite(uv[i + 1])):
                draw.line([tuple(uv[i]), tuple(uv[i + 1])], fill=colour, width=2)
            r = 4 if i == 0 else 2
            draw.ellipse([uv[i, 0] - r, uv[i, 1] - r, uv[i, 0] + r, uv[i, 1] + r], fill=colour)

    small, large = _font(12), _font(14)
    head = f"chain {caption.chain + 1}/{caption.chains}   subtask {caption.subtask + 1}/{max(len(caption.marks), 1)}"
    if caption.task:
        head += f"   {caption.task}"
    draw.text((6, 3), head, fill=(235, 235, 235), font=small)
    draw.text((6, 18), _fit(caption.instruction, large, frame_w - 12), fill=(255, 230, 120), font=large)
    bottom = BAR + height
    for i, mark in enumerate(caption.marks):
        colour = PENDING if mark is None else DONE if mark else FAILED
        x = 6 + i * 22
        draw.rectangle([x, bottom + 8, x + 16, bottom + 24], fill=colour)
        draw.text((x + 4, bottom + 9), "+" if mark else "x" if mark is False else str(i + 1), fill=(255, 255, 255),
                  font=small)
    status = []
    if caption.step is not None:
        status.append(f"step {caption.step}")
    if caption.latent_age_steps is not None:
        window = ""
        if caption.latent_period_steps:
            n = caption.latent_period_steps
            window = f" (Asy({n}): {n}-{2 * n - 1})"
        status.append(f"latent age {caption.latent_age_steps}{window}")
    draw.text((12 + 22 * len(caption.marks), bottom + 10), "   ".join(status), fill=(220, 220, 220), font=small)
    return np.asarray(canvas)


def _fit(text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


@dataclass
class VideoSummary:
    path: Path
    frames: int
    dropped: int  # frames the encoder was too far behind to take
    encode_seconds: float  # time the background thread spent drawing and encoding
    error: str = ""  # why the video is missing or cut short ("" when it was written)


class VideoWriter:
    """An MP4 written in a background thread: :meth:`add` queues a frame (copying it) and returns at once;
    :meth:`close` waits for the queue to drain and returns a :class:`VideoSummary`."""

    def __init__(self, path: str | Path, fps: int = VIDEO_FPS, max_queue: int = 300, block: bool = False) -> None:
        """``block``: :meth:`add` waits for room instead of dropping (offline filming of a bag, which reads
        faster than it encodes; never on a live path)."""
        self.path = Path(path)
        self._block = block
        self.fps = int(fps)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._frames = self._dropped = 0
        self._busy = 0.0
        self._error = ""
        self._closed = False
        self._thread = threading.Thread(target=self._encode, name=f"video {self.path.name}", daemon=True)
        self._thread.start()

    def add(self, rgb: np.ndarray, caption: Caption, trajectory: np.ndarray | None = None,
            gripper: np.ndarray | None = None, projection: Projection | None = None) -> bool:
        """Queue a frame; False (and counted) when the encoder is a whole queue behind or has failed."""
        if self._closed:
            raise RuntimeError(f"video {self.path} is closed")
        if self._error:
            self._dropped += 1
            return False
        item = (np.array(rgb, dtype=np.uint8, copy=True), caption,
                None if trajectory is None else np.array(trajectory, dtype=np.float64),
                None if gripper is None else np.array(gripper, dtype=np.float64), projection)
        try:
            if self._block:
                while not self._error:  # a dead encoder drains the queue and sets _error: never wait forever
                    try:
                        self._queue.put(item, timeout=1.0)
                        return True
                    except queue.Full:
                        continue
                self._dropped += 1
                return False
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            return False
        return True

    def close(self, timeout: float = 120.0) -> VideoSummary:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._error = self._error or f"the encoder did not finish within {timeout:g} s"
        return VideoSummary(self.path, self._frames, self._dropped, round(self._busy, 3), self._error)

    def _encode(self) -> None:
        import imageio_ffmpeg

        writer = None
        size = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                started = time.perf_counter()
                frame = annotate(*item)
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    writer = imageio_ffmpeg.write_frames(str(self.path), size, fps=self.fps, codec="libx264",
                                                         pix_fmt_out="yuv420p", quality=7, macro_block_size=BLOCK,
                                                         ffmpeg_log_level="error")
                    writer.send(None)  # start the generator
                if (frame.shape[1], frame.shape[0]) != size:
                    raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} in a video of {size[0]}x{size[1]} "
                                     "(the camera changed size mid-chain)")
                writer.send(np.ascontiguousarray(frame))
                self._frames += 1
                self._busy += time.perf_counter() - started
        except Exception as error:  # a full disk, a dead ffmpeg: the video is lost, the evaluation is not
            self._error = f"{type(error).__name__}: {error}"
            while True:  # drain, so add() never blocks on a dead encoder
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break
        finally:
            if writer is not None:
                try:
                    writer.close()
                except Exception as error:
                    self._error = self._error or f"{type(error).__name__}: {error}"


class ChainFilm:
    """What the evaluator knows of one chain, turned into its video: the captions follow the chain's
    subtasks, each camera image becomes a frame with the newest plan stamped at or before it, and the
    chain's end holds the last frame for a second with the final marks. Times are the stamps messages
    carry (integer ns); nothing here waits, and nothing reads a clock."""

    HOLD_FRAMES = VIDEO_FPS  # the outcome stays on screen this long at the end
    START_WINDOW_STEPS = 10  # with exact_start, the first frame taken lies this close after the start

    def __init__(self, writer: VideoWriter, chain: int, chains: int, tasks: list[str],
                 latent_period_steps: int = 0, step_ns: float = 1e9 / VIDEO_FPS, start_ns: int | None = None,
                 exact_start: bool = False) -> None:
        """``start_ns``: the stamp of the chain's start state (the reset's); images stamped before it are
        of the previous episode and left out. With ``exact_start`` (lockstep, where a step's image has its
        state's stamp, and sim time restarts at the reset, so an image of the previous episode may even
        be stamped later) the film begins with the first image stamped at most START_WINDOW_STEPS after it."""
        self.writer = writer
        self.caption = Caption(chain=chain, chains=chains, subtask=0, marks=[None] * len(tasks),
                               latent_period_steps=latent_period_steps or None)
        self._tasks = list(tasks)
        self._step_ns = float(step_ns)
        self._start_ns = None if start_ns is None else int(start_ns)  # the stamp of step 0
        self._waiting_for_start = exact_start and start_ns is not None
        self._latent_stamps: list[int] = []  # observation stamps of the latents heard, newest last
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None  # (stamp, positions, gripper)
        self._projection: Projection | None = None
        self._last: tuple[np.ndarray, int] | None = None

    def begin_subtask(self, index: int, task: str, instruction: str) -> None:
        for done in range(index):
            if self.caption.marks[done] is None:
                self.caption.marks[done] = True  # a later subtask began: this one succeeded
        self.caption.subtask, self.caption.task, self.caption.instruction = index, task, instruction

    def on_camera(self, projection: Projection) -> None:
        self._projection = projection

    def on_latent(self, observation_stamp_ns: int) -> None:
        self._latent_stamps.append(int(observation_stamp_ns))
        del self._latent_stamps[:-64]

    def on_plan(self, stamp_ns: int, positions: np.ndarray, gripper: np.ndarray) -> None:
        self._plan = (int(stamp_ns), np.asarray(positions, dtype=np.float64), np.asarray(gripper, dtype=np.float64))

    def on_image(self, rgb: np.ndarray, stamp_ns: int) -> bool:
        """A frame from the static camera; False when the writer had to drop it."""
        stamp_ns = int(stamp_ns)
        if self._last is not None and stamp_ns == self._last[1]:
            return True  # the lockstep bridge re-sent an observation it got no plan for: one frame
        if self._waiting_for_start:
            # Within a few steps of the start, not exactly at it: a best-effort frame may be lost.
            if not 0 <= stamp_ns - self._start_ns <= self.START_WINDOW_STEPS * self._step_ns:
                return True  # still the previous episode's images
            self._waiting_for_start = False
        if self._start_ns is None:
            self._start_ns = stamp_ns  # no start state given: the chain's first image is step 0
        if stamp_ns < self._start_ns:
            return True  # from before the chain began
        self.caption.step = round((stamp_ns - self._start_ns) / self._step_ns)
        older = [s for s in self._latent_stamps if s <= stamp_ns]
        self.caption.latent_age_steps = round((stamp_ns - max(older)) / self._step_ns) if older else None
        plan = self._plan if self._plan is not None and self._plan[0] <= stamp_ns else None
        self._last = (np.asarray(rgb), stamp_ns)
        return self.writer.add(rgb, _copy(self.caption), plan[1] if plan else None, plan[2] if plan else None,
                               self._projection)

    def finish(self, completed: int) -> VideoWriter:
        """Mark the outcome (``completed`` subtasks in a row), hold the last frame, and return the writer
        for the caller to close off the lockstep path."""
        for index in range(len(self.caption.marks)):
            self.caption.marks[index] = True if index < completed else False if index == completed else None
        if self._last is not None:
            for _ in range(self.HOLD_FRAMES):
                self.writer.add(self._last[0], _copy(self.caption))
        return self.writer


def _copy(caption: Caption) -> Caption:
    return Caption(**{**caption.__dict__, "marks": list(caption.marks)})
