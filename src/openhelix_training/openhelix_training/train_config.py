"""The training configuration as typed dataclasses: `TrainConfig` and its sections. A YAML file and
dotted `--set key=value` overrides are read into it by `load_train_config`; an unknown key is an error
naming it and the keys allowed there, a value of the wrong type an error naming the field.

Every field and its default is here (the packaged configs in configs/ only change some of them).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class TrainConfigError(ValueError):
    """A training configuration with an unknown key or a value of the wrong type."""


def _choices(*allowed: str) -> dict:
    return {"choices": allowed}


@dataclass(frozen=True)
class SyntheticDataConfig:
    """The generated CALVIN-layout set of data.kind 'synthetic' (write_calvin_episodes)."""

    num_windows: int = 4
    frames_per_window: int = 16
    static_size: int = 64
    gripper_size: int = 32


@dataclass(frozen=True)
class DataConfig:
    kind: str = field(default="synthetic", metadata=_choices("synthetic", "calvin", "rosbag"))
    # CALVIN split directory, or bag directory / list of bag directories
    path: str | list[str] | None = None
    frames: str = field(default="keyposes", metadata=_choices("keyposes", "all"))
    latent_delay: int = 0  # System 2 sees the image of k frames earlier (OpenHelix's delay training)
    max_windows: int | None = None
    max_points: int | None = None  # rosbag: keep at most this many points of each recorded cloud (memory)
    # rosbag: "keypose" (to the next keypose, resampled), "frames" (the next recorded frames, one per
    # control step) or "commands" (the demonstrator's commanded targets, one per control step: what a
    # policy that replans every step, as the graph's does, must publish; see trajectory_of_commands)
    trajectory: str = field(default="keypose", metadata=_choices("keypose", "frames", "commands"))
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)


@dataclass(frozen=True)
class System1Choice:
    preset: str = "tiny"
    overrides: dict = field(default_factory=dict)  # System1Config fields (checked when the model is built)
    pretrained: str | None = None  # a System 1 checkpoint directory: "policy from pre-trained"


@dataclass(frozen=True)
class System2Choice:
    preset: str = "tiny"
    overrides: dict = field(default_factory=dict)  # System2Config fields; mode: prompt_tuning | frozen | lora | full


@dataclass(frozen=True)
class TrainingConfig:
    stage1_steps: int = 20  # projector pre-alignment with the policy frozen; 0 turns the stage off
    stage2_steps: int = 40  # joint training
    batch_size: int = 8
    policy_lr: float = 3.0e-4
    policy_weight_decay: float = 5.0e-3
    mllm_lr: float = 5.0e-5  # <ACT>, LoRA or full MLLM weights
    heads_lr: float = 5.0e-5  # projector, auxiliary head, alignment projector
    aux_loss: bool = False
    aux_weight: float = 0.2
    aux_stages: list[int] = field(default_factory=lambda: [2])  # OpenHelix: the auxiliary loss in stage 2 only
    clip_loss: bool = False  # CLIP-style alignment of the latent with the instruction (LCB)
    clip_weight: float = 1.0
    grad_clip: float = 1.0
    mixed_precision: str = field(default="no", metadata=_choices("no", "bf16", "fp16"))
    gradient_checkpointing: bool = False
    # Pre-train the policy against a System 2 that does not train (mode frozen, no aux/clip loss, no
    # stage 1): each distinct (instruction, image) is encoded once and its latent reused, which makes
    # the policy's steps as cheap as System 1 alone (the paper's order: policy first, then prompt tuning).
    cache_latents: bool = False
    # centre and scale the goal latents System 1 reads by their statistics on the training data before
    # training (a frozen LLM's latents differ by ~0.2 % between instructions); stored in System 1's weights
    latent_normalization: bool = False
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end of each stage
    keep_checkpoints: int = 2
    resume: str | None = None  # None | "auto" (newest in output_dir) | a checkpoint directory
    num_workers: int = 0
    num_threads: int | None = None  # torch intra-op threads; 1 avoids oversubscribing a small shared CPU
    progress: bool = True
    tensorboard: bool = True  # used when the tensorboard package is installed


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/train"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    system1: System1Choice = field(default_factory=System1Choice)
    system2: System2Choice = field(default_factory=System2Choice)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The configuration of a nested dict (as YAML gives it); missing keys keep their defaults."""
        return _build(cls, data, "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_train_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A YAML config over the defaults; `overrides` are dotted `key=value` strings (value parsed as YAML),
    applied to the file's values before they are checked."""
    raw: dict = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise TrainConfigError(f"{path}: a training config is a mapping of sections, got {type(loaded).__name__}")
        raw = loaded or {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrainConfigError(f"override {item!r}: expected KEY=VALUE, e.g. training.stage2_steps=500")
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TrainConfigError(f"override {item!r}: {'.'.join(parts[:depth + 1])} is a value, not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return TrainConfig.from_dict(raw)


# ------------------------------------------------------------------------------------------------------
# checking a nested dict against the dataclasses


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise TrainConfigError(f"{where or 'the training config'} must be a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise TrainConfigError(f"unknown config key {_dotted(where, key)!r}; allowed "
                                   f"{'in ' + repr(where) if where else 'at the top level'}: {', '.join(fields)}")
    values = {}
    for key, value in data.items():
        name = _dotted(where, key)
        values[key] = _check(hints[key], value, name)
        allowed = fields[key].metadata.get("choices")
        if allowed and values[key] not in allowed:
            raise TrainConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return cls(**values)


def _dotted(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _check(expected, value, name: str):
    """`value` as the type `expected`, or a TrainConfigError naming the field."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None:
            if type(None) in options:
                return None
            raise TrainConfigError(f"{name} must not be null")
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(option, value, name)
            except TrainConfigError:
                continue
        raise TrainConfigError(f"{name} must be {_type_name(expected)}, got {_describe(value)}")
    if dataclasses.is_dataclass(expected):
        return _build(expected, value, name)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TrainConfigError(f"{name} must be {_type_name(expected)}, got {_describe(value)}")
        (item,) = typing.get_args(expected)
        return [_check(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
    if expected is dict:
        if not isinstance(value, dict):
            raise TrainConfigError(f"{name} must be a mapping, got {_describe(value)}")
        return dict(value)
    if expected is bool:
        if not isinstance(value, bool):
            raise TrainConfigError(f"{name} must be true or false, got {_describe(value)}")
        return value
    if expected is float:
        return _number(value, name, integral=False)
    if expected is int:
        return _number(value, name, integral=True)
    if expected is str:
        if not isinstance(value, str):
            raise TrainConfigError(f"{name} must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"{name}: no check for the type {expected!r}")


def _number(value, name: str, integral: bool):
    # YAML 1.1 (PyYAML) reads 1e-3 or 2e4, exponent without a dot, as a string: such strings count as the
    # number they spell
    kind = "an integer" if integral else "a number"
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise TrainConfigError(f"{name} must be {kind}, got {_describe(value)}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise TrainConfigError(f"{name} must be {kind}, got {_describe(value)}")
    if not integral:
        return float(number)
    if isinstance(number, float):
        if not number.is_integer():
            raise TrainConfigError(f"{name} must be {kind}, got {_describe(value)}")
        return int(number)
    return number


def _type_name(expected) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(expected))
    if typing.get_origin(expected) is list:
        (item,) = typing.get_args(expected)
        return "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(item, _type_name(item))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a mapping",
            type(None): "null"}.get(expected, getattr(expected, "__name__", str(expected)))
