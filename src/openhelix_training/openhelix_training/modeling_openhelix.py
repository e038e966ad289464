"""System 2 `openhelix-7b`: OpenHelix's released MLLM (LISA-style wrapper around LLaVA v1), from transformers
parts, with the released state-dict names so that the released weights load strictly.

Module tree (state-dict names in brackets; widths of `openhelix-7b`):

    model                     transformers LlamaModel: [model.embed_tokens] (32004, 4096), [model.layers.N.*]
                              (32 LLaMA-7B blocks), [model.norm]
      .vision_tower           LLaVA's CLIPVisionTower
        .vision_tower         transformers 4.x CLIPVisionModel, which kept the transformer under .vision_model
          .vision_model       transformers CLIPVisionModel (ViT-L/14, 224 px) [model.vision_tower.vision_tower.
                              vision_model.*]
      .mm_projector           Linear(1024 -> 4096)
      .text_hidden_fcs        ModuleList([Sequential(Linear(4096 -> 512))]) [model.text_hidden_fcs.0.0.*]
      .pred_act_mlps          Linear(4096 -> 2048); then .pred_pos_act (-> 3), .pred_rot_act (-> 6),
                              .pred_gripper_act (-> 1), no nonlinearity anywhere
    lm_head                   Linear(4096 -> 32004, no bias), loaded and kept, unused for the latent

What the release computes (planer.py `LISAForCausalLM.evaluate`, llava_arch.py, clip_encoder.py, and
online_evaluation_calvin/evaluate_policy_lcb_pt_act_simple_asy10.py):

- Image: CALVIN's static camera image, 200x200 uint8, *uncropped* (`rgb / 255`, then
  `(clip(x, 0, 1) * 255).astype(uint8)`, which gives back the same bytes), as a PIL image through
  clip-vit-large-patch14's CLIPImageProcessor: shortest edge to 224 (PIL bicubic), centre crop 224,
  x / 255, CLIP mean/std; then bfloat16. Here the same processor is built from explicit arguments, and the
  PIL implementation is chosen even when torchvision is installed (transformers 5 would otherwise resize
  with torchvision, which the release never did).
- Vision: the tower's hidden_states[-2] (output of its 23rd of 24 layers), CLS dropped: 256 patch features
  -> mm_projector -> 256 embeddings spliced in where the prompt's `<image>` stands.
- Prompt: LLaVA v1's conversation (`conv_llava_v1`), the question drawn by `random.choice` from
  `"Can you {instr}?"` and `"Can you control the robot to {instr}?"` for every call (evaluation too), the
  answer cut off at `" ASSISTANT:"` and `" <ACT>"` appended:

      A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful,
      detailed, and polite answers to the human's questions. USER: <im_start><image><im_end>
      Can you control the robot to {instr}? ASSISTANT: <ACT>

  (one line; the break stands for the "\\n" after `<im_end>`). `tokenizer_image_token` splits the string at
  `<image>` and tokenises both halves with transformers 4.31's slow LlamaTokenizer, which strips the
  whitespace on both sides of an added token (`<im_start>`, `<im_end>`, `<ACT>` are added tokens, not
  special-token-map entries) and gives every text piece sentencepiece's "▁" prefix. The ids are thus

      [<s>] + E("{system} USER:") + [<im_start>] + [<image>] + [<im_end>] + E("{question} ASSISTANT:") + [<ACT>]

  with E = the tokenizer's encoding of a piece without special tokens. Here `<image>` becomes 256
  `<im_patch>` ids (32000) whose embeddings are replaced by the image features, the positions the release
  gives them; `<ACT>` is the last id. The release truncates the ids to 512 - 255 = 257 (which would cut
  `<ACT>` off); such prompts are refused here instead.
- Latent: LLaMA's last hidden state *after the final RMSNorm* at `<ACT>` -> text_hidden_fcs[0], in the
  model's dtype (bfloat16 at evaluation), shape (512,); the policy reads it as one language token.
- Auxiliary head (training only): pred_act_mlps on the float32 hidden state at `<ACT>`, then the three heads:
  first future waypoint's position (3), 6D rotation (6), gripper (1); the loss uses position and rotation.

Special tokens: LLaVA-7B-Lightening-v1-1's tokenizer already holds `<im_patch>` 32000, `<im_start>` 32001,
`<im_end>` 32002 (LLaVA's builder adds them in that order); the release then adds `<ACT>` (32003) and
resizes the embeddings to 32004. planer.py hard-wires `seg_token_idx = 32003`, so a 32003-token vocabulary
has no `<ACT>` row: their issue #7 ran at 0 % success that way, because their evaluation loads with
strict=False. Loading here is strict and says so by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import (
    OPENHELIX_SYSTEM2_MODEL_TYPE,
    TOKENIZER_DIR,
    CheckpointError,
    load_state_checked,
    read_config,
    read_weights,
)
from .configuration_openhelix import OpenHelixSystem2Config
from .goal import LatentGoal
from .modeling_system2 import (
    CLIP_MEAN,
    CLIP_STD,
    System2InputError,
    byte_level_tokenizer,
    checked_uint8_images,
)
from .pretrained import PretrainedModelMixin

logger = logging.getLogger(__name__)

# peft's wrapper prefix; the release's evaluation strips it before load_state_dict
PEFT_PREFIX = "base_model.model."
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
# Buffers that transformers 4.31 wrote into state dicts and transformers 5 no longer keeps there: they carry
# no learned value, so they are checked against what the config implies and dropped.
ROTARY_INV_FREQ = re.compile(r"^model\.layers\.(\d+)\.self_attn\.rotary_emb\.inv_freq$")
CLIP_POSITION_IDS = VISION_PREFIX + "embeddings.position_ids"
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# relative tolerance for a stored inv_freq against the config's, by the dtype it was stored in
INV_FREQ_RTOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


# ------------------------------------------------------------------------------------------------------
# the module tree


class ReleasedCLIPVisionModel(nn.Module):
    """transformers 4.x CLIPVisionModel's level of the tree: its transformer sat under `.vision_model`
    (transformers 5's CLIPVisionModel is that transformer itself)."""

    def __init__(self, config):
        super().__init__()
        from transformers import CLIPVisionModel

        self.vision_model = CLIPVisionModel(config)


class CLIPVisionTower(nn.Module):
    """LLaVA's CLIPVisionTower: patch features of one hidden layer of CLIP, CLS dropped ("patch")."""

    def __init__(self, config, feature_layer: int):
        super().__init__()
        self.vision_tower = ReleasedCLIPVisionModel(config)
        self.feature_layer = feature_layer

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        clip = self.vision_tower.vision_model
        dtype = clip.embeddings.patch_embedding.weight.dtype
        out = clip(pixel_values.to(dtype), output_hidden_states=True)
        return out.hidden_states[self.feature_layer][:, 1:]


def _rope_inv_freq(text: dict) -> torch.Tensor:
    """inv_freq of LLaMA's rotary embedding as transformers 4.31 computed it."""
    head_dim = int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])
    theta = float(text.get("rope_theta", 10000.0))
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))


class OpenHelixSystem2(PretrainedModelMixin, nn.Module):
    """OpenHelix's System 2 as released: `encode(image, instruction)` -> the (latent_dim,) goal latent.

    Its state dict carries exactly the released names (see the module docstring), so a released MLLM file
    loads with `load_released_state_dict`, strictly. The System 2 node uses it like `System2`:
    `encode`, `check_instruction_length`, `config.latent_dim`, `eval()`, `to(device)`."""

    config_class = OpenHelixSystem2Config
    model_type = OPENHELIX_SYSTEM2_MODEL_TYPE
    config_key = "openhelix_system2"
    default_preset = "tiny-openhelix"

    def __init__(self, config: OpenHelixSystem2Config, tokenizer=None, device: str | torch.device | None = None):
        """`device` (else config.init_device, else the current default device) is where the weights are
        created; "meta" builds the structure only (`empty`)."""
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import CLIPVisionConfig, LlamaConfig, LlamaForCausalLM

        config.validate()
        self.config = config
        llama_config = LlamaConfig(**config.text)
        llama_config._attn_implementation = config.attn_implementation
        vision_config = CLIPVisionConfig(**config.vision)
        vision_config._attn_implementation = config.attn_implementation
        hidden, aux = config.hidden_size, config.aux_hidden
        device = device if device is not None else config.init_device
        previous = torch.get_default_dtype()
        # built directly in the model's dtype: 7B parameters never exist in float32 (28 GB)
        torch.set_default_dtype(TORCH_DTYPES[config.dtype])
        try:
            with torch.device(device) if device is not None else contextlib.nullcontext():
                torch.manual_seed(config.seed)
                llama = LlamaForCausalLM(llama_config)
                self.model = llama.model
                self.lm_head = llama.lm_head
                self.model.vision_tower = CLIPVisionTower(vision_config, config.vision_feature_layer)
                self.model.mm_projector = nn.Linear(vision_config.hidden_size, hidden)
                self.model.text_hidden_fcs = nn.ModuleList([nn.Sequential(nn.Linear(hidden, config.latent_dim))])
                self.model.pred_act_mlps = nn.Linear(hidden, aux)
                self.model.pred_pos_act = nn.Linear(aux, 3)
                self.model.pred_rot_act = nn.Linear(aux, 6)
                self.model.pred_gripper_act = nn.Linear(aux, 1)
        finally:
            torch.set_default_dtype(previous)
        self.image_processor = _clip_image_processor(int(config.vision["image_size"]))
        self.tokenizer = tokenizer if tokenizer is not None else _build_tokenizer(config)
        if self.tokenizer is not None:
            check_tokenizer(self.tokenizer, config)
        # the release draws its question from one process-wide random stream; encode(seed=None) does so here
        self._question_rng = random.Random(config.seed)

    @classmethod
    def empty(cls, config: OpenHelixSystem2Config, tokenizer=None) -> OpenHelixSystem2:
        """The model with its parameters on the meta device (no memory, no initialisation) and its fixed
        buffers (rotary frequencies, CLIP position ids) real: ready for `load_released_state_dict`, which then
        takes the loaded tensors over instead of copying them into initialised ones."""
        model = cls(config, tokenizer=tokenizer, device="meta")
        model._materialize_buffers()
        return model

    def _materialize_buffers(self) -> None:
        """Rebuilds the non-persistent buffers a meta construction left without values (they are no part of
        any state dict, so no checkpoint brings them)."""
        from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        for name, module in list(self.named_modules()):
            if isinstance(module, LlamaRotaryEmbedding):
                parent_name, _, child = name.rpartition(".")
                parent = self.get_submodule(parent_name) if parent_name else self
                with torch.device("cpu"):
                    setattr(parent, child, LlamaRotaryEmbedding(config=module.config))
            elif isinstance(module, CLIPVisionEmbeddings):
                module.register_buffer("position_ids", torch.arange(module.num_positions).expand((1, -1)),
                                       persistent=False)
        left = [n for n, b in self.named_buffers() if b.is_meta]
        if left:
            raise RuntimeError(f"buffers without values after a meta construction: {left[:10]}")

    # --- tokens and prompt -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def num_image_tokens(self) -> int:
        return self.config.num_image_tokens

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise CheckpointError(
                "this OpenHelix System 2 has no tokenizer: give tokenizer_path=<local directory with LLaVA's "
                "LLaMA tokenizer> (LLaVA-7B-Lightening-v1-1, or a converted checkpoint's tokenizer/)")
        return self.tokenizer

    def encode_text(self, text: str) -> list[int]:
        """E(text): the tokenizer's ids of one piece of text, without special tokens."""
        return list(self._require_tokenizer()(text, add_special_tokens=False)["input_ids"])

    def check_instruction(self, instruction: str) -> str:
        """The instruction, stripped; System2InputError when it is empty, too long in tokens, or holds one
        of the prompt's special tokens (which would become that token rather than text)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise System2InputError("instruction must be a non-empty string")
        text = instruction.strip()
        specials = [*self.config.special_token_ids, "<image>"]
        found = [tok for tok in specials if tok in text]
        if found:
            raise System2InputError(f"instruction contains the prompt token(s) {found}; not encoded")
        self.check_instruction_length(text)
        return text

    def check_instruction_length(self, text: str) -> int:
        """The instruction's length in tokens; System2InputError above config.max_instruction_tokens."""
        count = len(self.encode_text(text.strip()))
        limit = self.config.max_instruction_tokens
        if count > limit:
            raise System2InputError(f"instruction is {count} tokens long, more than max_instruction_tokens={limit}; "
                                    "not encoded")
        return count

    def choose_question(self, seed: int | None = 0) -> int:
        """The index of the question template: config.question_index when set; otherwise drawn like the
        release's `random.choice`: from random.Random(seed) for a given seed (so one seed always gives the
        same question), or, with seed=None, from this model's own stream seeded with config.seed, one draw
        per call. (The release draws from Python's global stream, seeded once with --seed and shared with
        the rest of its evaluation, so its call-by-call choices cannot be reproduced; both are uniform.)"""
        if self.config.question_index is not None:
            return self.config.question_index
        rng = self._question_rng if seed is None else random.Random(seed)
        return rng.choice(range(len(self.config.questions)))

    def question(self, instruction: str, question_index: int) -> str:
        return self.config.questions[question_index].format(instruction=instruction.strip())

    def prompt(self, instruction: str, question_index: int = 1) -> str:
        """The prompt string as the release builds it (before tokenisation)."""
        c = self.config
        return (f"{c.system_prompt} USER: {c.image_start_token}<image>{c.image_end_token}\n"
                f"{self.question(instruction, question_index)} ASSISTANT: {c.act_token}")

    def prompt_token_ids(self, instruction: str, question_index: int = 1) -> list[int]:
        """The release's input ids for the prompt, with its one `<image>` id expanded into
        num_image_tokens `<im_patch>` ids (see the module docstring); `<ACT>` is the last id."""
        c, ids = self.config, self.config.special_token_ids
        tok = self._require_tokenizer()
        head = [tok.bos_token_id] + self.encode_text(f"{c.system_prompt} USER:") + [ids[c.image_start_token]]
        tail = [ids[c.image_end_token]] + self.encode_text(f"{self.question(instruction, question_index)} ASSISTANT:")
        tail.append(ids[c.act_token])
        release_length = len(head) + 1 + len(tail)  # the release's ids hold one <image> id
        if release_length > c.max_prompt_ids:
            raise System2InputError(f"prompt is {release_length} ids long; the release truncates at "
                                    f"{c.max_prompt_ids} (cutting <ACT> off): not encoded")
        return head + [ids[c.image_patch_token]] * self.num_image_tokens + tail

    def tokenize(self, instructions: list[str], question_indices: list[int]) -> dict:
        """Right-padded input ids (pad = <unk>, as the release sets it), attention mask and <ACT> index."""
        rows = [self.prompt_token_ids(self.check_instruction(text), q) for text, q in zip(instructions,
                                                                                        question_indices, strict=True)]
        tok = self._require_tokenizer()
        pad = tok.unk_token_id if tok.unk_token_id is not None else 0
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask, "act_index": mask.sum(1) - 1}

    # --- images ------------------------------------------------------------------------------------------

    def preprocess_images(self, images) -> torch.Tensor:
        """HxWx3 uint8 images (or floats in [0, 1], turned into bytes as the release does) -> CLIP pixel
        values (B, 3, S, S) float32, through the release's CLIPImageProcessor (PIL bicubic)."""
        from PIL import Image

        # floats become bytes by truncation, the release's conversion
        pil = [Image.fromarray(np.ascontiguousarray(a)) for a in checked_uint8_images(images)]
        return self.image_processor(pil, return_tensors="pt")["pixel_values"]

    # --- forward -----------------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor, instructions: list[str],
                question_indices: list[int] | None = None) -> dict:
        """Goal latents (B, latent_dim) in the model's dtype, the hidden state at <ACT> (B, hidden) and the
        auxiliary predictions. question_indices: one per instruction; None draws them (`choose_question`)."""
        if question_indices is None:
            question_indices = [self.choose_question(None) for _ in instructions]
        tok = self.tokenize(instructions, question_indices)
        dev = self.device
        ids = tok["input_ids"].to(dev)
        patch_id = self.config.special_token_ids[self.config.image_patch_token]
        patches = ids == patch_id
        embeds = self.model.embed_tokens(ids)
        if pixel_values.shape[0] != ids.shape[0]:
            raise System2InputError(f"{pixel_values.shape[0]} images for {ids.shape[0]} instructions")
        features = self.model.mm_projector(self.model.vision_tower(pixel_values.to(dev)))
        if features.shape[1] != self.num_image_tokens or not bool((patches.sum(1) == features.shape[1]).all()):
            raise System2InputError(f"{features.shape[1]} image features per image for "
                                    f"{patches.sum(1).tolist()} <im_patch> positions")
        embeds = embeds.masked_scatter(patches[..., None], features.to(embeds.dtype))
        out = self.model(inputs_embeds=embeds, attention_mask=tok["attention_mask"].to(dev), use_cache=False)
        # last_hidden_state is after LLaMA's final RMSNorm, as the release's hidden_states[-1]
        act_hidden = out.last_hidden_state[torch.arange(ids.shape[0], device=dev), tok["act_index"].to(dev)]
        latent = self.model.text_hidden_fcs[0](act_hidden)
        return {"latent": latent, "act_hidden": act_hidden, "aux": self.aux_actions(act_hidden)}

    def aux_actions(self, act_hidden: torch.Tensor) -> dict:
        """The auxiliary head as the release computes it in training (float32, no nonlinearity):
        position (B, 3), rot6d (B, 6) and gripper (B, 1) of the first future waypoint, and `act_pred`,
        their concatenation (B, 10), the release's tensor."""
        def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.linear(x, layer.weight.float(), layer.bias.float())

        m = self.model
        latents = linear(m.pred_act_mlps, act_hidden.float())
        position, rot6d, gripper = (linear(m.pred_pos_act, latents), linear(m.pred_rot_act, latents),
                                    linear(m.pred_gripper_act, latents))
        return {"position": position, "rot6d": rot6d, "gripper": gripper,
                "act_pred": torch.cat([position, rot6d, gripper], dim=-1)}

    def encode(self, image, instruction: str, seed: int | None = 0) -> torch.Tensor:
        """The goal latent (latent_dim,) float32 on the CPU for one HxWx3 image and one instruction.
        Deterministic for a given seed: the seed picks the question template (`choose_question`), nothing
        else in the model is random."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.inference_mode():
                question = self.choose_question(seed)
                out = self.forward(self.preprocess_images(image), [instruction], [question])
        finally:
            if was_training:
                self.train()
        return out["latent"][0].float().cpu()

    def encode_goal(self, image, instruction: str, seed: int | None = 0) -> LatentGoal:
        """The released model's goal: one token, its <ACT> latent (the release sends no coarse actions)."""
        return LatentGoal.from_vector(self.encode(image, instruction, seed).numpy())

    # --- loading -----------------------------------------------------------------------------------------

    def load_released_state_dict(self, weights: dict[str, torch.Tensor], source: str = "checkpoint") -> dict:
        """Loads a released (or this project's) state dict strictly and returns what was dropped.

        `base_model.model.` prefixes are removed (as the release's evaluation does); transformers 4.31's
        `model.layers.N.self_attn.rotary_emb.inv_freq` buffers and CLIP's `embeddings.position_ids` are checked
        against what the config implies and dropped (transformers 5 keeps neither in the state dict); the
        vocabulary is checked by name first; then every missing, unexpected or misshapen tensor is named in one
        CheckpointError. On a model from `empty` the loaded tensors are taken over (cast to the model's
        dtype; copied only where a mapped file left them at unaligned addresses)."""
        state = strip_peft_prefix(weights, source)
        state, dropped = self._drop_release_buffers(state, source)
        self._check_vocabulary(state, source)
        own = self.state_dict()
        load_state_checked(self, state, source)  # on meta parameters this checks and copies nothing
        if any(t.is_meta for t in own.values()):
            self.load_state_dict({k: _owned(v, own[k].dtype) for k, v in state.items()}, strict=True, assign=True)
        if dropped:
            logger.info("%s: dropped %d buffer(s) transformers 5 does not keep in state dicts, each equal to "
                        "what the config implies: %s", source, len(dropped), ", ".join(dropped[:3])
                        + (" ..." if len(dropped) > 3 else ""))
        return {"dropped": dropped, "loaded": len(state)}

    def _drop_release_buffers(self, state: dict, source: str) -> tuple[dict, list[str]]:
        expected_freq = _rope_inv_freq(self.config.text)
        layers = int(self.config.text["num_hidden_layers"])
        kept, dropped, wrong = {}, [], []
        for key, value in state.items():
            match = ROTARY_INV_FREQ.match(key)
            if match and int(match.group(1)) < layers:
                rtol = INV_FREQ_RTOL.get(value.dtype, 1e-2)
                if value.is_meta or (tuple(value.shape) == tuple(expected_freq.shape)
                                     and torch.allclose(value.float(), expected_freq, rtol=rtol, atol=0)):
                    dropped.append(key)
                else:
                    wrong.append(f"{key}: {tuple(value.shape)} {value.float()[:3].tolist()}... vs the config's "
                                 f"{tuple(expected_freq.shape)} {expected_freq[:3].tolist()}...")
            elif key == CLIP_POSITION_IDS:
                positions = self.num_image_tokens + 1
                if value.is_meta or (value.numel() == positions
                                     and torch.equal(value.reshape(-1).long(), torch.arange(positions))):
                    dropped.append(key)
                else:
                    wrong.append(f"{key}: {tuple(value.shape)}, not arange({positions})")
            else:
                kept[key] = value
        if wrong:
            raise CheckpointError(f"checkpoint {source}: buffers that disagree with the configuration (a different "
                                  f"rotary base, head size or image size is a different model):\n  "
                                  + "\n  ".join(wrong))
        return kept, dropped

    def _check_vocabulary(self, state: dict, source: str) -> None:
        """The embedding and output rows against the vocabulary, with what a difference means for <ACT>."""
        vocab, act = self.config.vocab_size, self.config.act_token_id
        for key in ("model.embed_tokens.weight", "lm_head.weight"):
            if key not in state:
                continue  # named with the other missing tensors
            rows = int(state[key].shape[0])
            if rows == vocab:
                continue
            if rows == vocab - 1:
                why = (f"the vocabulary lacks <ACT>: its id {act} (hard-wired in the release's planer.py as "
                       f"seg_token_idx, after {self.config.image_patch_token} {act - 3}, "
                       f"{self.config.image_start_token} {act - 2}, {self.config.image_end_token} {act - 1}) has "
                       f"no row. This is OpenHelix issue #7: weights from before <ACT> was added, which the "
                       "release's evaluation loads with strict=False and then runs at 0 % success. Use the "
                       "MLLM weights trained with <ACT> (the release's prompt_tuning*/ checkpoints)")
            else:
                why = f"these weights are not OpenHelix's MLLM (<ACT> must be id {act}, the last of {vocab})"
            raise CheckpointError(f"checkpoint {source}: {key} has {rows} rows, but the model's vocabulary has "
                                  f"{vocab} tokens; {why}.")

    # --- persistence -------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides) -> OpenHelixSystem2:
        """A model directory of this project: built empty, then loaded strictly (the weights are taken,
        not copied, so a 7B checkpoint needs its size in memory once). The tokenizer comes from the
        directory's tokenizer/ unless `tokenizer_path` is overridden."""
        directory = Path(directory)
        meta = read_config(directory)
        if meta.get("model_type") != cls.model_type:
            raise CheckpointError(f"{directory}: not an {cls.__name__} checkpoint (model_type "
                                  f"{meta.get('model_type')!r}, expected {cls.model_type!r})")
        saved = meta.get(cls.config_key)
        if not isinstance(saved, dict):
            raise CheckpointError(f"{directory}/config.json: no {cls.config_key!r} block with the model config")
        fields = {**saved, **overrides}
        if fields.get("tokenizer") == "llama" and "tokenizer_path" not in overrides \
                and (directory / TOKENIZER_DIR).is_dir():
            fields["tokenizer_path"] = str(directory / TOKENIZER_DIR)
        model = cls.empty(cls.config_class.from_dict(fields))
        model.load_weights(directory)
        return model.eval()

    def load_weights(self, directory: str | os.PathLike) -> None:
        self.load_released_state_dict(read_weights(directory), str(directory))

    def save_companion_files(self, directory: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def _owned(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`tensor` in `dtype`, in memory of its own at an aligned address: tensors mapped from a safetensors
    file sit at unaligned offsets, where CPU kernels take other code paths (and results differ in the last
    bits from those of the same weights elsewhere)."""
    if tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor.clone() if tensor.data_ptr() % 64 else tensor


# ------------------------------------------------------------------------------------------------------
# tokenizer and image processor


def _build_tokenizer(config: OpenHelixSystem2Config):
    """The byte-level toy tokenizer with the four added tokens as its last ids, or LLaVA's LLaMA tokenizer
    from config.tokenizer_path with `<ACT>` added as the release adds it; None when a "llama" config has no
    path (the structure alone: loading or inspecting weights)."""
    specials = list(config.special_token_ids)
    if config.tokenizer == "byte-level":
        tok = byte_level_tokenizer(specials)
    else:
        if not config.tokenizer_path:
            return None
        from transformers import AutoTokenizer

        path = Path(config.tokenizer_path).expanduser()
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(f"tokenizer_path {path} holds no tokenizer ({', '.join(TOKENIZER_FILES)})")
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as error:  # every reason becomes one error naming the directory
            # LLaVA-7B-Lightening-v1-1 ships a sentencepiece tokenizer.model; transformers 5 converts it with
            # the sentencepiece and protobuf packages, which this project does not install by default
            raise CheckpointError(f"{path}: the tokenizer does not load offline ({type(error).__name__}: {error}). "
                                  "A directory with only tokenizer.model needs `pip install sentencepiece "
                                  "protobuf` once; the tokenizer/ an import writes loads without them") from None
        vocab = tok.get_vocab()
        if config.act_token not in vocab:
            tok.add_tokens([config.act_token])  # planer_utils.Model_init: tokenizer.add_tokens("<ACT>")
    tok.pad_token = tok.unk_token  # the release: tokenizer.pad_token = tokenizer.unk_token
    return tok


def check_tokenizer(tokenizer, config: OpenHelixSystem2Config) -> None:
    """CheckpointError unless the tokenizer has the release's layout: the four added tokens at their ids,
    `<ACT>` the last of config.vocab_size tokens, and (LLaMA) sentencepiece's "▁" at the start of a piece."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in config.special_token_ids}
    wrong = [f"{tok} is id {ids[tok]}, expected {want}" for tok, want in config.special_token_ids.items()
             if ids[tok] != want]
    if len(tokenizer) != config.vocab_size:
        wrong.append(f"the tokenizer has {len(tokenizer)} tokens, the model's vocabulary {config.vocab_size}")
    if wrong:
        raise CheckpointError("the tokenizer does not have the release's token layout (<im_patch>, <im_start>, "
                              "<im_end> right before <ACT>, the last id): " + "; ".join(wrong))
    if config.tokenizer == "llama":
        first = tokenizer.convert_ids_to_tokens(tokenizer("Can", add_special_tokens=False)["input_ids"])[:1]
        if not first or not first[0].startswith("▁"):
            raise CheckpointError(f"the tokenizer encodes 'Can' as {first}: the release's LLaMA tokenizer gives "
                                  "every text piece sentencepiece's '▁' prefix, so these ids would differ")


def _clip_image_processor(size: int):
    """clip-vit-large-patch14's preprocessor_config.json as arguments (never from a hub): shortest edge to
    `size` (bicubic), centre crop, rescale 1/255, CLIP mean/std. The PIL implementation, as in transformers
    4.31 that the release ran."""
    from PIL import Image

    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor as Processor
    return Processor(do_resize=True, size={"shortest_edge": size}, resample=Image.Resampling.BICUBIC,
                     do_center_crop=True, crop_size={"height": size, "width": size}, do_rescale=True,
                     rescale_factor=1 / 255, do_normalize=True, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
                     do_convert_rgb=True)


# ------------------------------------------------------------------------------------------------------
# released files


def strip_peft_prefix(weights: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Names without peft's `base_model.model.` prefix; CheckpointError when two names then collide."""
    out = {}
    for key, value in weights.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        if name in out:
            raise CheckpointError(f"checkpoint {source}: {name!r} is there both with and without {PEFT_PREFIX!r}")
        out[name] = value
    return out


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({exc})") from exc
    from .import_checkpoint import read_release_file

    content = read_release_file(path)  # torch.load(weights_only=True): tensors and containers only
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors (a state dict), got "
                              f"{type(content).__name__}")
    return content


def _merge_files(files: list[Path]) -> dict[str, torch.Tensor]:
    merged, origin = {}, {}
    for path in files:
        for key, value in _read_weight_file(path).items():
            if key in merged:
                raise CheckpointError(f"{key} is in both {origin[key].name} and {path.name}")
            merged[key], origin[key] = value, path
    return merged


def read_mllm_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of released MLLM weights: one file (`.safetensors`, or `.bin`/`.pt`/`.pth` read with
    torch.load(weights_only=True)), or a directory of shards with `model.safetensors.index.json` /
    `pytorch_model.bin.index.json` (every listed tensor must be in its shard, and nothing else), or a
    directory of `*.safetensors` shards without an index (all of them, as the release's README merges them),
    or a directory with `pytorch_model.bin`."""
    path = Path(path).expanduser()
    if path.is_file():
        return _read_weight_file(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such file or directory")
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = path / index_name
        if index_path.is_file():
            return _read_indexed(path, index_path)
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        return _merge_files(shards)
    if (path / "pytorch_model.bin").is_file():
        return _read_weight_file(path / "pytorch_model.bin")
    bins = sorted(path.glob("pytorch_model-*.bin"))
    if bins:
        return _merge_files(bins)
    raise CheckpointError(f"{path}: no weights (*.safetensors, an index json, or pytorch_model.bin)")


def _read_indexed(directory: Path, index_path: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index_path}: not a shard index with a weight_map ({exc})") from exc
    files = sorted(set(weight_map.values()))
    absent = [f for f in files if not (directory / f).is_file()]
    if absent:
        raise CheckpointError(f"{index_path}: shard(s) listed but missing: {', '.join(absent)}")
    merged, problems = {}, []
    for name in files:
        shard = _read_weight_file(directory / name)
        listed = {k for k, f in weight_map.items() if f == name}
        if listed - set(shard):
            problems.append(f"{name} lacks {sorted(listed - set(shard))[:5]}")
        if set(shard) - listed:
            problems.append(f"{name} holds tensors the index does not list: {sorted(set(shard) - listed)[:5]}")
        merged.update({k: v for k, v in shard.items() if k in listed})
    if problems:
        raise CheckpointError(f"{index_path}: the shards disagree with the index: " + "; ".join(problems))
    return merged


# CLIPVisionModel's transformer, as transformers 5 saves it (without the vision_model. level)
_BARE_VISION_ROOTS = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")
_VISION_CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                       "patch_size")


def read_clip_vision_weights(vision_tower_dir: str | os.PathLike,
                             config: OpenHelixSystem2Config) -> dict[str, torch.Tensor]:
    """The vision tower's tensors, under the released names, from a local Hugging Face CLIP directory (the
    release's --vision_tower clip-vit-large-patch14: a CLIPModel or CLIPVisionModel with config.json).
    The text tower and projections are not part of LLaVA's tower and are left out."""
    directory = Path(vision_tower_dir).expanduser()
    meta_path = directory / "config.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: no config.json (not a Hugging Face CLIP directory)")
    meta = json.loads(meta_path.read_text())
    vision = meta.get("vision_config") if meta.get("model_type") == "clip" else meta
    vision = vision or {}
    differ = [f"{k}: {vision[k]} vs {config.vision[k]}" for k in _VISION_CONFIG_KEYS
              if k in vision and k in config.vision and int(vision[k]) != int(config.vision[k])]
    if differ:
        raise CheckpointError(f"{meta_path}: not the vision tower this model has ({'; '.join(differ)})")
    out = {}
    for key, value in read_mllm_weights(directory).items():
        if key.startswith("vision_model."):
            out[VISION_PREFIX + key[len("vision_model."):]] = value
        elif key.startswith(_BARE_VISION_ROOTS):
            out[VISION_PREFIX + key] = value
    if not out:
        raise CheckpointError(f"{directory}: no vision_model.* tensors")
    return out


def load_openhelix_mllm(llm_path: str | os.PathLike, vision_tower_dir: str | os.PathLike | None = None,
                        tokenizer_dir: str | os.PathLike | None = None, preset: str = "openhelix-7b",
                        **overrides) -> OpenHelixSystem2:
    """The released MLLM as an OpenHelixSystem2, loaded strictly.

    llm_path: the released weights (see `read_mllm_weights`; `base_model.model.` prefixes are fine).
    vision_tower_dir: a local clip-vit-large-patch14 directory. Needed only when the weights lack the tower
      (the release saves its whole state dict, tower included); when both have it, the weights file wins,
      as in the release, which loads it last, and a difference is logged.
    tokenizer_dir: LLaVA's tokenizer (LLaVA-7B-Lightening-v1-1's directory); default llm_path when that is a
      directory holding a tokenizer. Not needed for a byte-level preset."""
    source = str(llm_path)
    weights = strip_peft_prefix(read_mllm_weights(llm_path), source)
    has_tower = any(k.startswith(VISION_PREFIX) for k in weights)
    config = OpenHelixSystem2Config.preset(preset, **overrides)
    if vision_tower_dir is not None:
        tower = read_clip_vision_weights(vision_tower_dir, config)
        if has_tower:
            differ = [k for k, v in tower.items() if k in weights and not torch.equal(weights[k].float(), v.float())]
            if differ:
                logger.warning("%s: %d vision tower tensor(s) differ from %s (e.g. %s); the weights file's are "
                               "used, as the release loads it after the tower", source, len(differ),
                               vision_tower_dir, differ[0])
        else:
            weights.update(tower)
    elif not has_tower:
        raise CheckpointError(f"{source} holds no vision tower ({VISION_PREFIX}*): give vision_tower_dir=<local "
                              "clip-vit-large-patch14 directory>")
    if config.tokenizer == "llama" and "tokenizer_path" not in overrides:
        if tokenizer_dir is None:
            candidate = Path(llm_path).expanduser()
            if candidate.is_dir() and any((candidate / n).is_file() for n in TOKENIZER_FILES):
                tokenizer_dir = candidate
        if tokenizer_dir is None:
            raise CheckpointError(f"no tokenizer for {source}: give tokenizer_dir=<LLaVA-7B-Lightening-v1-1 "
                                  "directory> (its LLaMA tokenizer with <im_patch>, <im_start>, <im_end>)")
        config = dataclasses.replace(config, tokenizer_path=str(Path(tokenizer_dir).expanduser()))
    model = OpenHelixSystem2.empty(config)
    model.load_released_state_dict(weights, source)
    return model.eval()


def import_openhelix_mllm(llm_path: str | os.PathLike, vision_tower_dir: str | os.PathLike | None,
                          out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
                          preset: str = "openhelix-7b", **overrides) -> Path:
    """Writes the released MLLM as a model directory of this project (config.json, model.safetensors with
    the released names, tokenizer/) and returns it; see `load_openhelix_mllm` for the arguments."""
    model = load_openhelix_mllm(llm_path, vision_tower_dir, tokenizer_dir, preset, **overrides)
    return model.save_pretrained(out_dir)
