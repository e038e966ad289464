"""Released weights into this project's checkpoint layout (safetensors + config.json), loudly.

3D Diffuser Actor's and OpenHelix's policy files are `torch.save`d dicts `{"weight": DDP state dict
("module."-prefixed), "optimizer": ..., "iter": int, "best_loss": float or None}`. They are read with
`torch.load(weights_only=True)`, which unpickles tensors, numbers, strings and containers only and runs no
code from the file. Loading is strict: every missing, unexpected or misshapen tensor is named.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .configuration_diffuser_actor import DiffuserActorConfig
from .modeling_diffuser_actor import DiffuserActor

# which preset a release file is, and how many instruction tokens its policy reads
RELEASE_KINDS = {
    "3dda": ("3dda", 16),  # CLIP ViT-B/32 text tokens
    "openhelix-policy": ("openhelix-policy", 1),  # the <ACT> latent
}
# the tensor whose first dimension is the proprioception history length
HISTORY_TENSOR = "encoder.curr_gripper_embed.weight"


def read_release_file(path: str | os.PathLike) -> dict:
    """The unpickled release file, read with weights_only=True; a CheckpointError says why it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        # mmap keeps a 400 MB file out of memory; files in the legacy (non-zip) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # retried without mmap, whose error is the one reported
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every reason becomes one error naming the file
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(error).__name__}: {error}). "
            "A release checkpoint holds only tensors, numbers and containers; a file that needs more to "
            "unpickle is not loaded here, because unpickling it could run code from the file") from None


def release_state_dict(content, source: str) -> dict[str, torch.Tensor]:
    """The state dict of a release file's content: its `weight` entry (or the content itself when it is
    already a flat dict of tensors), with DDP's `module.` prefix removed."""
    if isinstance(content, dict) and "weight" in content:
        weights = content["weight"]
    else:
        weights = content
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{source}: expected a dict with a 'weight' state dict, got "
                              f"{type(content).__name__} with keys {list(content)[:8] if isinstance(content, dict) else '-'}")
    not_tensors = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: 'weight' entries that are no tensors: {not_tensors[:10]}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}


def diffuser_actor_config_for(weights: dict[str, torch.Tensor], kind: str, **overrides) -> DiffuserActorConfig:
    """The config of a release file: the preset of its kind, with the history length its weights have."""
    if kind not in RELEASE_KINDS:
        raise ValueError(f"unknown release kind {kind!r}; choose from {sorted(RELEASE_KINDS)}")
    preset, tokens = RELEASE_KINDS[kind]
    if HISTORY_TENSOR not in weights:
        raise CheckpointError(f"no {HISTORY_TENSOR} in the checkpoint: not a 3D Diffuser Actor state dict "
                              f"(first keys: {list(weights)[:5]})")
    nhist = int(weights[HISTORY_TENSOR].shape[0])
    return DiffuserActorConfig.preset(preset, **{"nhist": nhist, "instruction_length": tokens, **overrides})


def load_release_policy(path: str | os.PathLike, kind: str = "3dda", **overrides) -> DiffuserActor:
    """A 3D Diffuser Actor / OpenHelix policy file as a `DiffuserActor`, loaded strictly."""
    weights = release_state_dict(read_release_file(path), str(path))
    model = DiffuserActor(diffuser_actor_config_for(weights, kind, **overrides))
    model.load_released_state_dict(weights, str(path))
    return model.eval()


def import_release_policy(path: str | os.PathLike, out_dir: str | os.PathLike, kind: str = "3dda",
                          **overrides) -> Path:
    """Writes the policy of a release file as a model directory of this project and returns it."""
    model = load_release_policy(path, kind, **overrides)
    return model.save_pretrained(out_dir)
