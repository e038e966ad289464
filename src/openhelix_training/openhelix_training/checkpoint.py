"""The checkpoint layout and its files. Everything that knows which directory holds what, and how a path
a user gives becomes the directory to load, is here:

    <run>/                          a training run's output directory (Trainer.out)
        checkpoints/latest          the name of its newest checkpoint
        checkpoints/step_0000500/   a training checkpoint:
            system1/                    a model directory of System 1
            system2/                    a model directory of System 2
            training_state.json         step, stage, the training config, the tasks of the data
            optimizer.pt                optimizer, RNG and data-order state for resuming (weights_only)
    a model directory:
        config.json                 model_type, the model config, package versions, git revision
        model.safetensors           the weights
        normalization.json          System 1: its position normalization
        tokenizer/                  System 2: its tokenizer

This module imports torch only where it reads or writes tensors, so that the layout functions stay
cheap for callers that never load a model (`openhelix demo` choosing a checkpoint).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# a model directory
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
NORMALIZATION_NAME = "normalization.json"
TOKENIZER_DIR = "tokenizer"
# a training checkpoint
SYSTEM1_DIR = "system1"
SYSTEM2_DIR = "system2"
TRAINING_STATE_NAME = "training_state.json"
RESUME_STATE_NAME = "optimizer.pt"
# a run directory
CHECKPOINTS_DIR = "checkpoints"
LATEST_NAME = "latest"
# config.json's model_type of each model, and the subdirectory of a training checkpoint that holds it
SYSTEM1_MODEL_TYPE = "openhelix_system1"
SYSTEM2_MODEL_TYPE = "openhelix_system2"
MODEL_DIRS = {SYSTEM1_MODEL_TYPE: SYSTEM1_DIR, SYSTEM2_MODEL_TYPE: SYSTEM2_DIR}
# The released systems' models, each playing one of the two roles above (the role is the key
# model_directories files a directory under; config.json's model_type says which class loads it).
DIFFUSER_ACTOR_MODEL_TYPE = "openhelix_diffuser_actor"
OPENHELIX_SYSTEM2_MODEL_TYPE = "openhelix_lisa_system2"
CLIP_TEXT_MODEL_TYPE = "openhelix_clip_text_system2"
MODEL_ROLES = {SYSTEM1_MODEL_TYPE: SYSTEM1_MODEL_TYPE, DIFFUSER_ACTOR_MODEL_TYPE: SYSTEM1_MODEL_TYPE,
               SYSTEM2_MODEL_TYPE: SYSTEM2_MODEL_TYPE, OPENHELIX_SYSTEM2_MODEL_TYPE: SYSTEM2_MODEL_TYPE,
               CLIP_TEXT_MODEL_TYPE: SYSTEM2_MODEL_TYPE}
# model_type -> (module, class) that loads it
MODEL_CLASSES = {SYSTEM1_MODEL_TYPE: (".modeling_system1", "System1"),
                 DIFFUSER_ACTOR_MODEL_TYPE: (".modeling_diffuser_actor", "DiffuserActor"),
                 SYSTEM2_MODEL_TYPE: (".modeling_system2", "System2"),
                 OPENHELIX_SYSTEM2_MODEL_TYPE: (".modeling_openhelix", "OpenHelixSystem2"),
                 CLIP_TEXT_MODEL_TYPE: (".modeling_clip_text", "ClipTextSystem2")}


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the model it is loaded into."""


# ------------------------------------------------------------------------------------------------------
# run directories and training checkpoints


def checkpoint_name(step: int) -> str:
    return f"step_{int(step):07d}"


def step_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """A run's training checkpoints, oldest first (the zero-padded names sort by step)."""
    return sorted(p for p in (Path(run_dir) / CHECKPOINTS_DIR).glob("step_*") if p.is_dir())


def mark_latest(run_dir: str | os.PathLike, name: str) -> None:
    (Path(run_dir) / CHECKPOINTS_DIR / LATEST_NAME).write_text(name)


def is_training_run(path: str | os.PathLike) -> bool:
    return (Path(path) / CHECKPOINTS_DIR / LATEST_NAME).is_file()


def training_runs(root: str | os.PathLike) -> list[Path]:
    """The training run directories directly under `root` (those with checkpoints/latest)."""
    return sorted(p.parent.parent for p in Path(root).glob(f"*/{CHECKPOINTS_DIR}/{LATEST_NAME}") if p.is_file())


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` holds both models the way the trainer writes them (system1/ and system2/)."""
    return (Path(path) / SYSTEM1_DIR).is_dir() and (Path(path) / SYSTEM2_DIR).is_dir()


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A training run's output directory -> its newest checkpoint; any other directory -> itself."""
    path = Path(path)
    latest = path / CHECKPOINTS_DIR / LATEST_NAME
    if latest.is_file():
        return path / CHECKPOINTS_DIR / latest.read_text().strip()
    return path


def training_state_file(path: str | os.PathLike) -> Path:
    """training_state.json of a run (its newest checkpoint's) or of a training checkpoint."""
    return resolve_checkpoint(path) / TRAINING_STATE_NAME


def read_training_state(path: str | os.PathLike) -> dict:
    """training_state.json of a run or training checkpoint; {} when there is none (a model directory)."""
    state_path = training_state_file(path)
    if not state_path.is_file():
        return {}
    return _json_object(state_path)


def _json_object(path: Path) -> dict:
    """A JSON file that must hold an object; CheckpointError naming the file when it does not."""
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def model_directories(path: str | os.PathLike) -> tuple[Path, dict[str, Path]]:
    """(the checkpoint `path` resolves to, {model_type: model directory} of the models it holds) for a
    run directory, a training checkpoint or a single model directory. Raises CheckpointError when it is
    none of these."""
    given = Path(path)
    resolved = resolve_checkpoint(given)
    if not resolved.exists():
        why = f" (named by {given / CHECKPOINTS_DIR / LATEST_NAME})" if resolved != given else ""
        raise CheckpointError(f"checkpoint {resolved} does not exist{why}")
    if (resolved / CONFIG_NAME).is_file():
        kind = read_config(resolved).get("model_type")
        if kind not in MODEL_ROLES:
            raise CheckpointError(f"{resolved / CONFIG_NAME}: unknown model_type {kind!r} "
                                  f"(known: {', '.join(MODEL_ROLES)})")
        return resolved, {MODEL_ROLES[kind]: resolved}
    found = {kind: resolved / sub for kind, sub in MODEL_DIRS.items() if (resolved / sub).is_dir()}
    if not found:
        raise CheckpointError(f"{resolved}: neither a model directory ({CONFIG_NAME}) nor a training checkpoint "
                              f"(no {SYSTEM1_DIR}/ or {SYSTEM2_DIR}/)")
    return resolved, found


def model_class(directory: str | os.PathLike) -> type:
    """The class that loads the model directory `directory` (by its config.json's model_type)."""
    import importlib

    kind = read_config(directory).get("model_type")
    if kind not in MODEL_CLASSES:
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME}: unknown model_type {kind!r} "
                              f"(known: {', '.join(MODEL_CLASSES)})")
    module, name = MODEL_CLASSES[kind]
    return getattr(importlib.import_module(module, __package__), name)


def load_model_directory(directory: str | os.PathLike, **overrides):
    """The model saved in `directory`, of whichever class its model_type names."""
    return model_class(directory).from_pretrained(directory, **overrides)


def find_model_directory(path: str | os.PathLike, model_type: str) -> Path | None:
    """The directory of the `model_type` model in a run, training checkpoint or model directory; None
    when the checkpoint holds only the other model."""
    if model_type not in MODEL_DIRS:
        raise ValueError(f"model_type must be one of {', '.join(MODEL_DIRS)}, got {model_type!r}")
    return model_directories(path)[1].get(model_type)


@dataclass
class LoadedCheckpoint:
    system1: object | None
    system2: object | None
    step: int
    train_config: dict | None
    path: Path


def load_checkpoint(path: str | os.PathLike, system1_overrides: dict | None = None,
                    system2_overrides: dict | None = None) -> LoadedCheckpoint:
    """Loads what a checkpoint holds: a training checkpoint (system1/, system2/, training_state.json), a
    training output directory (its newest checkpoint), or one model directory. Overrides change the
    configuration before loading; when shapes then differ the CheckpointError names every tensor."""
    resolved, directories = model_directories(path)
    s1_dir, s2_dir = directories.get(SYSTEM1_MODEL_TYPE), directories.get(SYSTEM2_MODEL_TYPE)
    s1 = load_model_directory(s1_dir, **(system1_overrides or {})) if s1_dir else None
    s2 = load_model_directory(s2_dir, **(system2_overrides or {})) if s2_dir else None
    state = read_training_state(resolved)
    return LoadedCheckpoint(s1, s2, int(state.get("step", 0)), state.get("train_config"), resolved)


def save_resume_state(checkpoint_dir: str | os.PathLike, state: dict) -> Path:
    """Writes optimizer.pt: `state` must hold only tensors, numbers, strings, None, lists and dicts, so
    that it reads back with torch.load(weights_only=True), which runs no pickled code."""
    import torch

    path = Path(checkpoint_dir) / RESUME_STATE_NAME
    torch.save(state, path)
    return path


def read_resume_state(checkpoint_dir: str | os.PathLike) -> dict:
    import pickle

    import torch

    path = Path(checkpoint_dir) / RESUME_STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} is missing")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot resume: {path} is corrupt or holds more than tensors and plain "
                              f"values ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot resume: {path} holds a {type(state).__name__}, not a dict")
    return state


# ------------------------------------------------------------------------------------------------------
# model directories: config.json and model.safetensors


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
    from safetensors.torch import save_file

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
    return _json_object(path)


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    import torch

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
