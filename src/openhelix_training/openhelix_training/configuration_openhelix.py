"""Configuration of System 2 `openhelix-7b`: OpenHelix's MLLM exactly as released.

The released System 2 (github OpenHelix-robot/OpenHelix, `planer.py` `LISAForCausalLM`, built on LLaVA v1's
`LlavaLlamaForCausalLM` in `model/llava/`) is LLaVA-7B-Lightening-v1-1: LLaMA-7B, a CLIP ViT-L/14 vision tower
at 224 px whose second-to-last layer gives 256 patch features (CLS dropped), one Linear(1024 -> 4096)
`mm_projector`, and the vocabulary grown to 32004 tokens by `<ACT>` at id 32003. On top of it sit the goal
projector `text_hidden_fcs` (ModuleList[Sequential[Linear(4096 -> 512)]]) and the auxiliary action head
`pred_act_mlps` Linear(4096 -> 2048) -> `pred_pos_act` (3) / `pred_rot_act` (6) / `pred_gripper_act` (1).

The fields say what the released code fixes in code or through the LLaVA config it loads: the two dicts
are transformers `LlamaConfig` / `CLIPVisionConfig` arguments, the special tokens are the LLaVA v1 ones,
and the prompt fields reproduce what its CALVIN evaluation feeds (see `modeling_openhelix.py` for the exact
token sequence).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .configuration_system2 import LLAVA_V1_SYSTEM

# datasets/utils_llcb.py LONG_QUESTION_LIST of the release, in its order (after <im_start><image><im_end>\n);
# `transfer()` draws one of them with random.choice for every prompt, in training and at evaluation alike.
RELEASE_QUESTIONS = ("Can you {instruction}?", "Can you control the robot to {instruction}?")
TOKENIZERS = ("llama", "byte-level")
DTYPES = ("float32", "bfloat16", "float16")

# LLaMA-7B as LLaVA-7B-Lightening-v1-1 configures it (transformers LlamaConfig arguments), with the vocabulary
# the release resizes it to: 32000 LLaMA tokens + <im_patch>, <im_start>, <im_end> (LLaVA v1) + <ACT>.
LLAMA_7B = dict(
    vocab_size=32004, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
    hidden_act="silu", tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)
# openai/clip-vit-large-patch14, the tower the release loads (--vision_tower clip-vit-large-patch14).
CLIP_VIT_L_14_224 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
    patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3,
)


@dataclass
class OpenHelixSystem2Config:
    """OpenHelix's System 2. Presets:

    - `openhelix-7b`: the released widths (LLaMA-7B, CLIP ViT-L/14 224, vocabulary 32004, `<ACT>` = 32003),
      bfloat16 as the release evaluates it; the tokenizer is LLaVA's LLaMA tokenizer from `tokenizer_path`
      (a local directory, e.g. LLaVA-7B-Lightening-v1-1's, or a converted checkpoint's `tokenizer/`);
    - `tiny-openhelix`: the same module tree, names and special-token layout (the four added tokens are the
      last four ids, `<ACT>` the very last) at toy widths with an offline byte-level tokenizer, for tests.
    """

    # transformers LlamaConfig / CLIPVisionConfig arguments
    text: dict = field(default_factory=lambda: dict(LLAMA_7B))
    vision: dict = field(default_factory=lambda: dict(CLIP_VIT_L_14_224))
    # LLaVA's mm_vision_select_layer: hidden_states[-2] of the tower, CLS dropped ("patch")
    vision_feature_layer: int = -2
    latent_dim: int = 512  # out_dim of text_hidden_fcs
    # special tokens: LLaVA v1 added <im_patch>, <im_start>, <im_end> (ids 32000-32002), OpenHelix <ACT>
    image_patch_token: str = "<im_patch>"
    image_start_token: str = "<im_start>"
    image_end_token: str = "<im_end>"
    act_token: str = "<ACT>"
    act_token_id: int = 32003  # planer.py: self.seg_token_idx = 32003, hard-wired
    # prompt
    system_prompt: str = LLAVA_V1_SYSTEM
    questions: tuple[str, ...] = RELEASE_QUESTIONS
    question_index: int | None = None  # None: drawn at random as the release does; an index: always that one
    max_instruction_tokens: int = 128  # longer instructions are refused before the network
    # The release truncates input ids to tokenizer.model_max_length - 255 = 512 - 255 (the one <image> id
    # counted once): a longer prompt would lose <ACT>, so it is refused instead.
    max_prompt_ids: int = 257
    # tokenizer: "llama" (LLaVA's, loaded from tokenizer_path) or "byte-level" (offline toy, tiny only)
    tokenizer: str = "llama"
    tokenizer_path: str | None = None
    # runtime
    dtype: str = "bfloat16"  # the release runs the MLLM in bfloat16 (torch_dtype=torch.bfloat16)
    # transformers 4.31's LLaMA and CLIP attention was "eager": with it, bfloat16 latents equal the release's
    # bit for bit on CPU; "sdpa" differs by bfloat16 rounding (about 0.5 % of the latent's norm)
    attn_implementation: str = "eager"
    init_device: str | None = None  # where random weights are created; None: the current default device
    seed: int = 0  # initialisation of random weights, and the question stream of encode(seed=None)

    # --- derived ---------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.text["vocab_size"])

    @property
    def hidden_size(self) -> int:
        return int(self.text["hidden_size"])

    @property
    def aux_hidden(self) -> int:
        return self.hidden_size // 2  # planer.py: nn.Linear(in_dim, in_dim // 2)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """The four added tokens and their ids: the last four of the vocabulary, in LLaVA's order."""
        first = self.act_token_id - 3
        tokens = (self.image_patch_token, self.image_start_token, self.image_end_token, self.act_token)
        return {tok: first + i for i, tok in enumerate(tokens)}

    @property
    def num_image_tokens(self) -> int:
        return (int(self.vision["image_size"]) // int(self.vision["patch_size"])) ** 2

    # --- checks and conversions --------------------------------------------------------------------------

    def validate(self) -> None:
        if self.act_token_id != self.vocab_size - 1:
            raise ValueError(
                f"act_token_id {self.act_token_id} must be the last id of the vocabulary of {self.vocab_size} "
                f"(the release: <ACT> = 32003 of 32004, after <im_patch>, <im_start>, <im_end>)")
        if self.act_token_id < 3:
            raise ValueError(f"act_token_id {self.act_token_id} leaves no room for the three image tokens")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not self.questions or any("{instruction}" not in q for q in self.questions):
            raise ValueError("every question must contain {instruction}")
        if self.question_index is not None and not 0 <= self.question_index < len(self.questions):
            raise ValueError(f"question_index {self.question_index} is not an index of the "
                             f"{len(self.questions)} questions")
        layers = int(self.vision["num_hidden_layers"])
        if not -layers <= self.vision_feature_layer <= layers:
            raise ValueError(f"vision_feature_layer {self.vision_feature_layer} is outside the tower's "
                             f"{layers} layers")
        if int(self.vision["image_size"]) % int(self.vision["patch_size"]):
            raise ValueError("vision image_size must be a multiple of patch_size")
        longest = self.max_prompt_ids - 1 + self.num_image_tokens
        if longest > int(self.text["max_position_embeddings"]):
            raise ValueError(f"max_prompt_ids {self.max_prompt_ids} with {self.num_image_tokens} image tokens "
                             f"({longest} positions) exceeds max_position_embeddings "
                             f"{self.text['max_position_embeddings']}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OpenHelixSystem2Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown OpenHelixSystem2Config fields: {sorted(unknown)}")
        data = dict(data)
        if "questions" in data:
            data["questions"] = tuple(data["questions"])
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> OpenHelixSystem2Config:
        presets = {
            "openhelix-7b": {},
            "tiny-openhelix": dict(
                # byte-level tokenizer: 4 specials + 256 bytes = 260 base tokens, then the four added ones
                text=dict(vocab_size=264, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                          rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0),
                vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                            image_size=32, patch_size=8, projection_dim=32, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5, num_channels=3),
                act_token_id=263, latent_dim=32, tokenizer="byte-level", dtype="float32",
                # a byte per token: the LLaVA system prompt alone is 160 ids
                max_prompt_ids=496,
            ),
        }
        if name not in presets:
            raise ValueError(f"unknown OpenHelix System 2 preset {name!r}; choose from {sorted(presets)}")
        cfg = cls.from_dict({**presets[name], **overrides})
        cfg.validate()
        return cfg
