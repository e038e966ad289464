"""System 1's position normalization: the one object that says how trajectory offsets and workspace
positions map to [-1, 1], saved as normalization.json beside the weights.

Checkpoints written before this file existed kept the same bounds three times (buffers in
model.safetensors, a "normalization" block and two System1Config fields in config.json); they are read
from there (`Normalization.read_saved`), the buffers first since they were what the model computed with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import NORMALIZATION_NAME

# the names the bounds had as persistent buffers in model.safetensors and as System1Config fields
LEGACY_BOUND_NAMES = ("position_bounds", "workspace_bounds")

Bounds = tuple[tuple[float, float, float], tuple[float, float, float]]


class NormalizationError(ValueError):
    """Bounds that are not a (low xyz, high xyz) pair of finite numbers with low < high."""


def _bounds(value, name: str) -> Bounds:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NormalizationError(f"{name} must be [[low x, y, z], [high x, y, z]] numbers, got {value!r}") from exc
    if array.shape != (2, 3):
        raise NormalizationError(f"{name} must have shape (2, 3): [[low x, y, z], [high x, y, z]], got shape "
                                 f"{array.shape}")
    if not np.all(np.isfinite(array)):
        raise NormalizationError(f"{name} must be finite, got {array.tolist()}")
    if not np.all(array[0] < array[1]):
        raise NormalizationError(f"{name}: every low must be below its high, got {array.tolist()}")
    # System 1 computes in float32: holding the float32 values makes this object equal to what the model
    # uses, and a save/load round trip exact
    low, high = (tuple(float(v) for v in row) for row in array.astype(np.float32))
    return low, high


@dataclass(frozen=True)
class Normalization:
    """position_bounds: per-axis (low, high) of the trajectory offsets from the current tool position;
    workspace_bounds: per-axis (low, high) of tool and scene positions in the world frame. Metres."""

    position_bounds: Bounds = ((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3))
    workspace_bounds: Bounds = ((-1.0, -1.0, -0.5), (1.0, 1.0, 1.5))

    def __post_init__(self) -> None:
        for name in ("position_bounds", "workspace_bounds"):
            object.__setattr__(self, name, _bounds(getattr(self, name), name))

    def to_dict(self) -> dict:
        return {"position_bounds": [list(row) for row in self.position_bounds],
                "workspace_bounds": [list(row) for row in self.workspace_bounds]}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        if not isinstance(data, dict):
            raise NormalizationError(f"normalization must be a mapping, got {type(data).__name__}")
        allowed = ("position_bounds", "workspace_bounds")
        unknown = [key for key in data if key not in allowed]
        missing = [key for key in allowed if key not in data]
        if unknown or missing:
            raise NormalizationError(f"normalization needs exactly the keys {', '.join(allowed)}"
                                     + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                                     + (f"; missing: {', '.join(missing)}" if missing else ""))
        return cls(data["position_bounds"], data["workspace_bounds"])

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / NORMALIZATION_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Normalization:
        path = Path(directory) / NORMALIZATION_NAME
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise NormalizationError(f"{path}: cannot read ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise NormalizationError(f"{path}: corrupt JSON ({exc})") from exc
        try:
            return cls.from_dict(data)
        except NormalizationError as exc:
            raise NormalizationError(f"{path}: {exc}") from exc

    @classmethod
    def read_saved(cls, directory: str | os.PathLike, legacy_tensors: dict, config: dict) -> Normalization:
        """The normalization of a saved System 1: normalization.json; for older checkpoints the bounds
        buffers that were in model.safetensors (`legacy_tensors`, name -> tensor), else the
        "normalization" block or the System1Config fields of config.json (`config`, the whole file)."""
        directory = Path(directory)
        if (directory / NORMALIZATION_NAME).is_file():
            return cls.load(directory)
        if all(name in legacy_tensors for name in LEGACY_BOUND_NAMES):
            return cls(*(legacy_tensors[name].tolist() for name in LEGACY_BOUND_NAMES))
        for where in ("normalization", "system1"):
            block = config.get(where)
            if isinstance(block, dict) and all(name in block for name in LEGACY_BOUND_NAMES):
                try:
                    return cls(*(block[name] for name in LEGACY_BOUND_NAMES))
                except NormalizationError as exc:
                    raise NormalizationError(f"{directory}/config.json, {where!r}: {exc}") from exc
        raise NormalizationError(
            f"{directory}: no normalization: neither {NORMALIZATION_NAME} nor (older checkpoints) "
            f"position_bounds/workspace_bounds in the weights or in config.json")
