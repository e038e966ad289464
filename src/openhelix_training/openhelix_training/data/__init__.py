"""Demonstration data in one sample format, from CALVIN's dataset layout and from this project's rosbags."""

from .calvin import CalvinDataset, write_calvin_episodes
from .sample import Normalization, Sample, collate_samples, compute_normalization
from .trajectory import discover_keyposes, trajectory_to_next_keypose

__all__ = [
    "CalvinDataset",
    "Normalization",
    "Sample",
    "collate_samples",
    "compute_normalization",
    "discover_keyposes",
    "trajectory_to_next_keypose",
    "write_calvin_episodes",
]
