"""System 2 without ROS: load the MLLM, check its inputs, turn (image, instruction) into a goal latent,
and decide which observation steps get a latent under the paper's Asy(N) rule.

The ``system2`` node (system2/node.py) converts messages and calls this; tests and the graph bench
drive it directly. The timing rules are those of docs/ros_graph.md:

- lockstep: System 2 encodes the static image of steps ``0, N, 2N, ...`` (every step when ``N = 0``);
- realtime: it encodes the newest image at its own rate (the node's business, not this module's).

The Asy(N) rules both systems follow live in common/timing.py.

Never imports rclpy.
"""

from __future__ import annotations

import collections
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openhelix_ros.common.timing import encodes_step
from openhelix_training.goal import LatentGoal, LatentGoalError, check_latent_goal

# Configuration names System 2 is built from (openhelix_training presets).
SYSTEM2_CONFIGS = ("tiny", "embedded", "llava-1.5-7b")
# OpenHelix's released System 2 (openhelix_training's OpenHelixSystem2: the LISA / LLaVA-v1 layout); the
# 7B normally comes from an imported checkpoint (openhelix import-checkpoint openhelix ...)
OPENHELIX_SYSTEM2_CONFIGS = ("tiny-openhelix", "openhelix-7b")
# The frozen CLIP text encoder of 3D Diffuser Actor (the "Only Policy" baseline): the user's CLIP from
# model_path, or random weights for tests
CLIP_TEXT_SYSTEM2_CONFIGS = ("clip-text", "tiny-clip-text")


# Lockstep images waiting for the model. The bridge waits for the policy, so the queue stays short;
# the bound only protects memory when System 2 is far behind (each drop is logged).
LOCKSTEP_QUEUE = 64


@dataclass(frozen=True)
class LockstepImage:
    """One lockstep image waiting to be encoded."""

    stamp_ns: int
    step: int
    rgb: np.ndarray
    arrival: float
    digest: bytes
    stand_in: bool = False  # encoded for a period whose own first image never came


class LockstepImages:
    """Which lockstep images System 2 encodes, in order: those of steps 0, N, 2N, ... (Asy(N)).

    Two things make this more than a step filter. The lockstep bridge re-sends the observation it waits
    on until a plan comes, so the same image arrives again: an image already queued, or already encoded
    for the current instruction, is not encoded twice (identified by stamp *and* content, since sim time
    restarts at every reset; forgotten when an episode ends). And when a period's own image never came
    (System 2 was still loading its model when the bridge published step 0, say), the first image of
    that period that does come is encoded in its place (``stand_in``), because a latent that can never
    come would otherwise hold the whole graph; Asy(N) is then not exact for that period, and the caller
    says so.

    Episodes are told apart by the step going back (a reset restarts it at 0), or by an image of the
    same step with other content (a reset to step 0 while the bridge's first observation, of the scene
    it started with, still waited for an instruction). ``episode`` counts them; images of an earlier
    episode still queued are dropped, never encoded.
    """

    def __init__(self, latent_period_steps: int, capacity: int = 64, remembered: int = 16) -> None:
        if latent_period_steps < 0:
            raise ValueError(f"latent_period_steps must be >= 0, got {latent_period_steps}")
        self.period = int(latent_period_steps)
        self.capacity = int(capacity)
        self._queue: collections.deque[LockstepImage] = collections.deque()
        self._encoded: collections.deque[tuple[int, bytes, int]] = collections.deque(maxlen=remembered)
        self._last_step: int | None = None
        self._last_digest: bytes | None = None
        self._covered_period: int | None = None  # the newest period of this episode with an image queued
        self.episode = 0

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, stamp_ns: int, step: int, rgb: np.ndarray, arrival: float) -> list[str]:
        """Take an image; returns what is worth a log line (a stand-in, a drop)."""
        notes = []
        digest = hashlib.blake2b(np.ascontiguousarray(rgb).tobytes(), digest_size=16).digest()
        if self._last_step is not None and (step < self._last_step
                                            or (step == self._last_step and digest != self._last_digest)):
            self._covered_period = None  # a reset: a new episode starts
            self.episode += 1
            self._queue.clear()  # the old episode's images: their latents would only mislead
            # A new episode may show exactly the old one's first image at the same stamp (a restarted bridge,
            # a reset to the same seed): it must be encoded again, so what was encoded before is forgotten.
            self._encoded.clear()
        self._last_step, self._last_digest = step, digest
        period = step // self.period if self.period else step
        encodes = encodes_step(step, self.period)
        if not encodes and self._covered_period is not None and period <= self._covered_period:
            return notes
        if any(item.stamp_ns == stamp_ns and item.digest == digest for item in self._queue):
            return notes  # a re-send of an image still waiting
        stand_in = not encodes
        if stand_in:
            notes.append(f"the image of step {period * self.period} never arrived (started late, or lost): "
                         f"encoding step {step}'s for its period; Asy({self.period}) is not exact there")
        if len(self._queue) >= self.capacity:
            dropped = self._queue.popleft()
            notes.append(f"System 2 is {self.capacity} images behind: the image of step {dropped.step} will "
                         "get no latent")
        self._queue.append(LockstepImage(int(stamp_ns), int(step), rgb, arrival, digest, stand_in))
        self._covered_period = period if self._covered_period is None else max(self._covered_period, period)
        return notes

    def pop(self, instruction_sequence: int) -> LockstepImage | None:
        """The next image to encode for this instruction, skipping those already encoded for it."""
        while self._queue:
            item = self._queue.popleft()
            key = (item.stamp_ns, item.digest, int(instruction_sequence))
            if key in self._encoded:
                continue
            self._encoded.append(key)
            return item
        return None


# ---------------------------------------------------------------------------------------------------
# Inputs


# CALVIN's instructions are under 80 characters and their enriched paraphrases under 200: a bound well
# above both, checked before any tokenisation (a 100,000-character text once asked the tiny model for 40 GB).
MAX_INSTRUCTION_CHARS = 1000


def check_instruction(text: str, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """The instruction, stripped; ValueError when it is not a non-empty string of at most ``max_chars``."""
    if not isinstance(text, str):
        raise ValueError(f"instruction must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"instruction has {len(text)} characters, more than the limit of {max_chars} "
                         f"(parameter max_instruction_chars); not encoded")
    stripped = text.strip()
    if not stripped:
        raise ValueError("instruction is empty: System 2 needs a task in words (e.g. 'open the drawer')")
    if "\ufffd" in stripped:
        # rclpy decodes a string that is not valid UTF-8 with U+FFFD in place of the bad bytes: what the
        # sender meant is lost, and a latent of the rest would steer the arm to a task nobody asked for.
        raise ValueError(f"instruction is not valid UTF-8 ({stripped.count(chr(0xfffd))} undecodable "
                         "character(s), shown as U+FFFD); not encoded")
    return stripped


def check_image(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB image (alpha dropped from HxWx4); ValueError naming what is wrong otherwise."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]  # rgba/bgra decoded to RGBA: the alpha channel carries nothing for the MLLM
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"System 2 needs an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to encode")
    if image.dtype != np.uint8:
        raise ValueError(f"System 2 needs 8-bit RGB (rgb8/bgr8), got dtype {image.dtype}")
    return np.ascontiguousarray(image)


# ---------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class LatentResult:
    """One goal (its latent's token matrix, and coarse actions when this System 2 sends them) and how long
    it took (seconds of wall clock, encoding only)."""

    goal: LatentGoal
    instruction: str
    inference_time: float


class System2Core:
    """A loaded System 2 and the bookkeeping the node needs around it."""

    max_instruction_chars = MAX_INSTRUCTION_CHARS

    def __init__(self, model, model_id: str, seed: int = 0) -> None:
        self.model = model
        self.model.eval()
        self.model_id = model_id
        self.seed = int(seed)

    @classmethod
    def load(cls, model: str = "tiny", checkpoint: str = "", model_path: str = "", seed: int = 0,
             device: str = "cpu") -> System2Core:
        """Build System 2 from a configuration name (``tiny`` | ``embedded`` | ``llava-1.5-7b``, the
        last with ``model_path``, a local llava-hf directory) or from ``checkpoint`` (a model directory,
        a training checkpoint or a training run's output directory), which wins when given."""
        from openhelix_training import OpenHelixSystem2, System2
        from openhelix_training.checkpoint import SYSTEM2_MODEL_TYPE, find_model_directory, model_class

        if checkpoint:
            path = Path(checkpoint).expanduser()
            if not path.exists():
                raise ValueError(f"System 2 checkpoint {path} does not exist")
            # System 2's directory alone: a training checkpoint also holds System 1, which this process
            # never runs and so does not build
            directory = find_model_directory(path, SYSTEM2_MODEL_TYPE)
            if directory is None:
                raise ValueError(f"checkpoint {path} holds no System 2 (it is a System 1 checkpoint)")
            kind = model_class(directory)
            # model_path: a llava-hf directory for System2, LLaVA's tokenizer directory for OpenHelix's
            key = "tokenizer_path" if kind is OpenHelixSystem2 else "model_path"
            overrides = {key: model_path} if model_path else {}
            instance, model_id = kind.from_pretrained(directory, **overrides), str(path)
        else:
            known = SYSTEM2_CONFIGS + OPENHELIX_SYSTEM2_CONFIGS + CLIP_TEXT_SYSTEM2_CONFIGS
            if model not in known:
                raise ValueError(f"unknown System 2 configuration {model!r}; choose from {', '.join(known)} "
                                 "or give a checkpoint directory")
            if model in OPENHELIX_SYSTEM2_CONFIGS:
                overrides = {"tokenizer_path": model_path} if model_path else {}
                instance, model_id = OpenHelixSystem2.from_config(model, **overrides), model
            elif model in CLIP_TEXT_SYSTEM2_CONFIGS:
                from openhelix_training import ClipTextSystem2

                overrides = {"model_path": model_path} if model_path else {}
                instance, model_id = ClipTextSystem2.from_config(model, **overrides), model
            else:
                overrides = {"model_path": model_path} if model_path else {}
                instance, model_id = System2.from_config(model, **overrides), model
        if device != "cpu":
            instance.to(device)
        return cls(instance, model_id, seed)

    @property
    def latent_dim(self) -> int:
        """The width of every latent token."""
        return int(self.model.config.latent_dim)

    def describe_latent(self) -> str:
        """How this System 2 forms its latent, as a configuration file would say it ("act", "tokens:
        language, 8 coarse actions"). The released OpenHelix model has no such switch: one <ACT>."""
        latent = getattr(self.model.config, "latent", None)
        return "act" if latent is None else latent.describe()

    def describe_vision(self) -> str | None:
        """What this System 2 sees with ("vision weights playtable-v1", "a seeded random vision tower", "no
        image"); None for a model without the switch (the released OpenHelix, a user's LLaVA, a text encoder)."""
        config = self.model.config
        if not hasattr(config, "vision_weights") or config.source == "pretrained":
            return None
        if not config.use_image:
            return "no image (text only)"
        return f"vision weights {config.vision_weights}" if config.vision_weights else "a seeded random vision tower"

    def check_instruction(self, instruction: str) -> str:
        """The instruction, stripped, once it is within this System 2's limits in characters and in tokens;
        ValueError naming the limit otherwise. Cheap: the node checks an instruction when it arrives."""
        text = check_instruction(instruction, self.max_instruction_chars)
        self.model.check_instruction_length(text)
        return text

    def encode(self, image: np.ndarray, instruction: str) -> LatentResult:
        """Check the inputs, then encode; ValueError on an empty or too long instruction (in characters
        here, in tokens by the model) or a wrong image."""
        text = check_instruction(instruction, self.max_instruction_chars)
        rgb = check_image(image)
        start = time.perf_counter()
        goal = self.model.encode_goal(rgb, text, seed=self.seed)
        elapsed = time.perf_counter() - start
        # A latent with NaN (or of a width System 1 was not built for) would make System 1 plan garbage:
        # refuse to hand it on.
        try:
            goal = check_latent_goal(goal, self.latent_dim, what="System 2's latent")
        except LatentGoalError as error:
            raise ValueError(f"System 2 produced an invalid latent: {error}") from error
        return LatentResult(goal=goal, instruction=text, inference_time=elapsed)
