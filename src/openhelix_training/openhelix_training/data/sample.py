"""The one training sample format both readers produce, its batching, and normalization statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..normalization import Normalization
from ..observation import Observation


@dataclass
class Sample:
    """One training example.

    observation: what System 1 sees at the frame; image: the RGB image System 2 sees (the static camera,
    taken `latent_delay` frames earlier when training with a delay); proprio: 10-D (tcp xyz, 6D rotation,
    gripper openness); rel_positions (T, 3), rot6d (T, 6), gripper_open (T,): the trajectory to the next
    keypose relative to the current pose."""

    observation: Observation
    image: np.ndarray
    instruction: str
    proprio: np.ndarray
    rel_positions: np.ndarray
    rot6d: np.ndarray
    gripper_open: np.ndarray
    task: str = ""
    episode: str = ""
    frame: int = 0
    meta: dict = field(default_factory=dict)


def compute_normalization(samples, margin: float = 0.1, max_samples: int = 2000) -> Normalization:
    """Per-axis min/max of the trajectory offsets and of the tool positions over (a subset of) the data,
    widened by `margin` of the range on each side (and at least 1 cm): System 1's Normalization."""
    rel, tool = [], []
    n = len(samples)
    idx = np.linspace(0, n - 1, min(n, max_samples)).astype(int) if n else []
    for i in idx:
        s = samples[int(i)]
        rel.append(s.rel_positions)
        tool.append(s.proprio[None, :3])
    if not rel:
        raise ValueError("cannot compute normalization statistics from an empty data set")

    def bounds(arr):
        arr = np.concatenate(arr)
        lo, hi = arr.min(0), arr.max(0)
        pad = np.maximum((hi - lo) * margin, 0.01)
        return [(lo - pad).tolist(), (hi + pad).tolist()]

    ws = bounds(tool)
    ws = [(np.asarray(ws[0]) - 0.5).tolist(), (np.asarray(ws[1]) + 0.5).tolist()]  # scene around the tool
    return Normalization(position_bounds=bounds(rel), workspace_bounds=ws)


def collate_samples(samples: list[Sample]) -> dict:
    """Stacks the array fields; observations and images stay lists (each model batches them itself)."""
    return {
        "observations": [s.observation for s in samples],
        "images": [s.image for s in samples],
        "instructions": [s.instruction for s in samples],
        "proprio": torch.from_numpy(np.stack([s.proprio for s in samples]).astype(np.float32)),
        "rel_positions": torch.from_numpy(np.stack([s.rel_positions for s in samples]).astype(np.float32)),
        "rot6d": torch.from_numpy(np.stack([s.rot6d for s in samples]).astype(np.float32)),
        "gripper_open": torch.from_numpy(np.stack([s.gripper_open for s in samples]).astype(np.float32)),
    }
