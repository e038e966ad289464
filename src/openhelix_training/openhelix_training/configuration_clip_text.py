"""Configuration of the `clip-text` System 2: a frozen CLIP text encoder whose token states are the latent.

This is 3D Diffuser Actor's own conditioning, and so the paper's "Only Policy" baseline: the instruction
plus "." through CLIP's text transformer, padded to 16 tokens, ``last_hidden_state`` (16 x 512 for CLIP
ViT-B/32) handed to the policy. No image, nothing trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .configuration_system2 import LatentConfig


@dataclass
class ClipTextConfig:
    """Presets: `clip-text` (the user's CLIP directory from `model_path`, e.g. a local copy of
    openai/clip-vit-base-patch32) and `tiny-clip-text` (random weights and a byte-level tokenizer, tests)."""

    source: str = "pretrained"  # "pretrained" (a local transformers CLIP directory) | "random"
    model_path: str | None = None
    max_length: int = 16  # 3D Diffuser Actor pads (and cuts) every instruction to 16 tokens
    append_period: bool = True  # 3D Diffuser Actor encodes "instruction."
    max_instruction_tokens: int = 128  # as System 2: longer instructions are refused before the network
    # random-weight text transformer (source="random")
    text: dict = field(default_factory=lambda: dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2, max_position_embeddings=32))
    seed: int = 0

    # what the trainer and the nodes ask of any System 2: an instruction-only, untrained encoder whose latent
    # is a matrix of tokens
    use_image: bool = False
    mode: str = "frozen"

    @property
    def latent(self) -> LatentConfig:
        return LatentConfig(kind="tokens", token_set="language")

    @property
    def latent_dim(self) -> int:
        """The width of every token: the text transformer's hidden size (512 for CLIP ViT-B/32)."""
        return int(self.text.get("hidden_size", 512)) if self.source == "random" else self._pretrained_width()

    def _pretrained_width(self) -> int:
        import json
        from pathlib import Path

        config = json.loads((Path(self.model_path).expanduser() / "config.json").read_text())
        return int(config.get("text_config", config).get("hidden_size", 512))

    def validate(self) -> None:
        if self.source not in ("pretrained", "random"):
            raise ValueError(f"clip-text source must be 'pretrained' or 'random', got {self.source!r}")
        if self.source == "pretrained" and not self.model_path:
            raise ValueError("clip-text loads the user's CLIP: pass model_path=<a local transformers CLIP directory> "
                             "(never a hub id), e.g. a copy of openai/clip-vit-base-patch32")
        if self.mode != "frozen" or self.use_image:
            raise ValueError("clip-text is a frozen, text-only encoder: mode 'frozen', use_image false")
        if not 1 <= self.max_length <= 77:
            raise ValueError(f"clip-text max_length must be in 1..77 (CLIP's context), got {self.max_length}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClipTextConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ClipTextConfig fields: {sorted(unknown)} (known: {sorted(names)})")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> ClipTextConfig:
        presets = {"clip-text": {}, "tiny-clip-text": dict(source="random")}
        if name not in presets:
            raise ValueError(f"unknown clip-text preset {name!r}; choose from {sorted(presets)}")
        cfg = cls.from_dict({**presets[name], **overrides})
        cfg.validate()
        return cfg
