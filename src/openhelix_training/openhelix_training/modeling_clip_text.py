"""The `clip-text` System 2: CLIP's text transformer (transformers CLIPTextModel), frozen; its 16 token
states are the goal latent, as 3D Diffuser Actor conditions its policy (configuration_clip_text.py).

It answers what the trainer and the system2 node ask of a System 2 (forward, encode_goal, the
instruction limits, from/save_pretrained), so the paper's "Only Policy" baseline runs through the same
graph and training as the dual systems."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import CLIP_TEXT_MODEL_TYPE
from .configuration_clip_text import ClipTextConfig
from .goal import LatentGoal, check_latent_goal
from .modeling_system2 import System2InputError, byte_level_tokenizer, check_instruction_tokens
from .pretrained import PretrainedModelMixin


def build_clip_text(cfg: ClipTextConfig):
    """(CLIPTextModel, tokenizer) for a configuration; never touches a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    if cfg.source == "pretrained":
        path = Path(cfg.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"clip-text model_path {path} is not a local transformers CLIP directory "
                                    "(no config.json)")
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # a full CLIPModel directory holds the text tower too: CLIPTextModel reads its text_config
        return CLIPTextModel.from_pretrained(str(path), local_files_only=True), tokenizer
    tokenizer = byte_level_tokenizer([])
    torch.manual_seed(cfg.seed)
    text = dict(cfg.text)
    text.setdefault("vocab_size", len(tokenizer))
    # CLIP's pooled output looks for its end-of-text token; the byte-level tokenizer's is </s>
    text.setdefault("eos_token_id", tokenizer.eos_token_id)
    text.setdefault("bos_token_id", tokenizer.bos_token_id)
    text.setdefault("pad_token_id", tokenizer.pad_token_id)
    return CLIPTextModel(CLIPTextConfig(**text)), tokenizer


class ClipTextSystem2(PretrainedModelMixin, nn.Module):
    config_class = ClipTextConfig
    model_type = CLIP_TEXT_MODEL_TYPE
    config_key = "clip_text"
    default_preset = "tiny-clip-text"

    def __init__(self, config: ClipTextConfig, text_model=None, tokenizer=None):
        super().__init__()
        config.validate()
        self.config = config
        if text_model is None:
            text_model, tokenizer = build_clip_text(config)
        self.text_model = text_model.eval()
        self.text_model.requires_grad_(False)
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.text_model.parameters()).device

    # --- what a System 2 answers --------------------------------------------------------------------

    def check_instruction_length(self, text: str) -> int:
        return check_instruction_tokens(self.tokenizer, text, self.config.max_instruction_tokens)

    def head_parameters(self) -> list[nn.Parameter]:
        return []  # nothing trains: 3D Diffuser Actor keeps CLIP frozen

    def trainable_parameter_count(self, include_heads: bool = False) -> int:
        return 0

    def forward(self, pixel_values, instructions: list[str], use_prefix_cache: bool = False) -> dict:
        """The instructions' token states: ``latent_tokens`` (B, max_length, width) with an all-true
        ``latent_mask`` (3D Diffuser Actor hands the policy every one of the 16 states, padding included),
        and their mean as ``latent``. ``pixel_values`` is ignored: this encoder reads no image."""
        for text in instructions:
            if not isinstance(text, str) or not text.strip():
                raise System2InputError("instruction must be a non-empty string")
            self.check_instruction_length(text)
        texts = [text.strip() + ("." if self.config.append_period else "") for text in instructions]
        tok = self.tokenizer(texts, padding="max_length", max_length=self.config.max_length, truncation=True,
                             return_tensors="pt")
        with torch.no_grad():
            states = self.text_model(input_ids=tok["input_ids"].to(self.device),
                                     attention_mask=tok["attention_mask"].to(self.device)).last_hidden_state
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        return {"latent_tokens": states, "latent_mask": mask, "latent": states.mean(1)}

    def encode_goal(self, image, instruction: str, seed: int | None = 0) -> LatentGoal:
        tokens = self.forward(None, [instruction])["latent_tokens"][0].float().cpu().numpy()
        return check_latent_goal(LatentGoal(tokens=np.ascontiguousarray(tokens)), self.config.latent_dim,
                                 what="the clip-text latent")

    def encode(self, image, instruction: str, seed: int | None = 0) -> torch.Tensor:
        """The 16 token states flattened (max_length * width,): what a 3D Diffuser Actor policy reads."""
        return torch.from_numpy(self.encode_goal(image, instruction, seed).tokens.reshape(-1))

    # --- persistence --------------------------------------------------------------------------------

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        # the user's CLIP stays where it is (rebuilt from model_path); random weights are the model itself
        return self.state_dict() if self.config.source == "random" else {}

    def optional_weight_prefixes(self) -> tuple[str, ...]:
        return () if self.config.source == "random" else ("text_model.",)
