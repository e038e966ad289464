"""Checkpoint files: safetensors weights + a JSON config (model config, normalization, versions, git
revision), and a strict loader that names every tensor that does not fit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the model it is loaded into."""


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    if not rev:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", str(here)], cwd=here, capture_output=True, text=True, check=False
    ).stdout.strip()
    return rev + ("-dirty" if dirty else "")


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "diffusers", "peft", "accelerate", "safetensors", "numpy", "openhelix_training"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def save_weights_and_config(directory: str | os.PathLike, state: dict[str, torch.Tensor], config: dict) -> Path:
    """Writes model.safetensors and config.json (with versions and git revision) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage: clone so every tensor owns its memory.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    meta = dict(config)
    meta.setdefault("versions", versions())
    meta.setdefault("git_revision", git_revision())
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
    return directory


def _json_default(obj):
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj)}")


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no {CONFIG_NAME} (not a checkpoint directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc})") from exc


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({exc})") from exc


def load_state_checked(
    module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, allow_missing: tuple[str, ...] = ()
) -> None:
    """Loads `state` into `module` only when every tensor matches by name and shape; otherwise raises a
    CheckpointError naming each missing, unexpected or differently shaped tensor. Names starting with
    one of `allow_missing` may be absent from the checkpoint (weights that come from elsewhere)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not match the model configuration:"]
        limit = 200

        def more(items):
            return f" ... and {len(items) - limit} more" if len(items) > limit else ""

        if shapes:
            lines.append(f"  {len(shapes)} tensor(s) with a different shape:")
            lines += [f"    {s}" for s in shapes[:limit]]
            lines[-1] += more(shapes)
        if missing:
            lines.append(f"  {len(missing)} tensor(s) missing from the checkpoint: " + ", ".join(missing[:limit])
                         + more(missing))
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected tensor(s) in the checkpoint: "
                         + ", ".join(unexpected[:limit]) + more(unexpected))
        raise CheckpointError("\n".join(lines))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {source}: non-finite values in tensor(s) {', '.join(bad[:20])}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
