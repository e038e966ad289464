"""`from_config` / `from_pretrained` / `save_pretrained` for both models, the transformers/diffusers way:
a model is built from its dataclass config (a preset name, a config, or a dict, plus overrides) and
saved to / loaded from a directory of config.json + model.safetensors (+ the files the model keeps
beside its weights, see checkpoint.py for the layout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch

from .checkpoint import (
    CheckpointError,
    load_state_checked,
    read_config,
    read_weights,
    save_weights_and_config,
)


class PretrainedModelMixin:
    """Mixed into an nn.Module whose `__init__(config)` takes an instance of `config_class`, a dataclass
    with `to_dict`, `from_dict` and `preset(name, **overrides)`. config.json stores the config under
    `config_key` next to `model_type`, so that a directory says which model it holds.

    A model adds what its weights alone do not carry through the hooks `save_companion_files` and
    `load_companion_files`, and may keep tensors out of the file (`weights_to_save`) or let them be
    absent from it (`optional_weight_prefixes`)."""

    config_class: ClassVar[type]
    model_type: ClassVar[str]
    config_key: ClassVar[str]
    default_preset: ClassVar[str]

    # --- construction ------------------------------------------------------------------------------

    @classmethod
    def make_config(cls, name_or_config=None, **overrides):
        """A preset name (None: `default_preset`), a config instance or a dict of its fields; `overrides`
        replace fields of it."""
        if name_or_config is None:
            name_or_config = cls.default_preset
        if isinstance(name_or_config, cls.config_class):
            return cls.config_class.from_dict({**name_or_config.to_dict(), **overrides})
        if isinstance(name_or_config, dict):
            return cls.config_class.from_dict({**name_or_config, **overrides})
        if isinstance(name_or_config, str):
            return cls.config_class.preset(name_or_config, **overrides)
        raise TypeError(f"{cls.__name__}.from_config takes a preset name, a {cls.config_class.__name__} or a dict, "
                        f"got {type(name_or_config).__name__}")

    @classmethod
    def from_config(cls, name_or_config=None, **overrides):
        return cls(cls.make_config(name_or_config, **overrides))

    # --- persistence -------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        save_weights_and_config(directory, self.weights_to_save(),
                                {"model_type": self.model_type, self.config_key: self.config.to_dict()})
        self.save_companion_files(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides):
        """The model saved in `directory`; `overrides` change its config before the weights are loaded
        (a CheckpointError then names every tensor that no longer fits)."""
        meta = read_config(directory)
        if meta.get("model_type") != cls.model_type:
            raise CheckpointError(f"{directory}: not a {cls.__name__} checkpoint (model_type "
                                  f"{meta.get('model_type')!r}, expected {cls.model_type!r})")
        saved = meta.get(cls.config_key)
        if not isinstance(saved, dict):
            raise CheckpointError(f"{directory}/config.json: no {cls.config_key!r} block with the model config")
        model = cls(cls.config_class.from_dict({**cls.saved_config_fields(saved), **overrides}))
        model.load_weights(directory)
        return model

    def load_weights(self, directory: str | os.PathLike) -> None:
        """Loads the weights (and companion files) of `directory` into this model, which must have the
        configuration they were saved with."""
        weights = self.load_companion_files(Path(directory), read_weights(directory))
        load_state_checked(self, weights, str(directory), allow_missing=self.optional_weight_prefixes())

    # --- hooks -------------------------------------------------------------------------------------

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def save_companion_files(self, directory: Path) -> None:
        """Writes what the model keeps beside its weights."""

    def load_companion_files(self, directory: Path, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reads what the model keeps beside its weights; returns the weights to load into the module
        (without entries that older checkpoints stored there and the module no longer holds)."""
        return weights

    def optional_weight_prefixes(self) -> tuple[str, ...]:
        """Names starting with one of these may be absent from the file (weights that come from elsewhere)."""
        return ()

    @classmethod
    def saved_config_fields(cls, saved: dict) -> dict:
        """The config fields of config.json's block, with fields that older versions saved and the config
        no longer has taken out."""
        return saved
