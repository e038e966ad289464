"""System 2 `openhelix-7b`: OpenHelix's released MLLM (planer.py LISAForCausalLM on LLaVA v1) from transformers
parts, with the released state-dict names.

The released layout is written out below by rule (LLaMA-7B, CLIP ViT-L/14 224, projector, goal projector, aux
head) with the release's numbers as literals: the full-size preset must equal it on the meta device, and the
toy-width preset carries the same names, so that generated "release files" (peft prefixes, transformers
4.31's rotary buffers and all) load strictly. Numerical agreement with the released code itself (run with
transformers 4.31 at toy width) was checked by hand, outside the tests.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from openhelix_training.checkpoint import CheckpointError
from openhelix_training.configuration_openhelix import OpenHelixSystem2Config
from openhelix_training.modeling_openhelix import (
    OPENHELIX_SYSTEM2_MODEL_TYPE,
    OpenHelixSystem2,
    import_openhelix_mllm,
    load_openhelix_mllm,
    read_mllm_weights,
)
from openhelix_training.modeling_system2 import System2InputError, byte_level_tokenizer

IMAGE = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
VISION = "model.vision_tower.vision_tower.vision_model."
# (hidden, intermediate, vocab, layers) of the language model; (hidden, intermediate, layers, patch, image) of
# the tower; latent width
RELEASE_7B = dict(text=(4096, 11008, 32004, 32), vision=(1024, 4096, 24, 14, 224), latent=512)
TINY = dict(text=(64, 128, 264, 2), vision=(32, 64, 3, 8, 32), latent=32)


def released_shapes(text, vision, latent) -> dict[str, tuple[int, ...]]:
    """LISAForCausalLM's state dict as transformers 5 keeps it (4.31 added one rotary inv_freq per layer)."""
    hidden, inner, vocab, layers = text
    width, width_inner, vision_layers, patch, image = vision
    half = hidden // 2
    out = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    for i in range(layers):  # LLaMA: no biases, as many key/value heads as query heads
        p = f"model.layers.{i}."
        out.update({p + f"self_attn.{x}_proj.weight": (hidden, hidden) for x in "qkvo"})
        out.update({p + "mlp.gate_proj.weight": (inner, hidden), p + "mlp.up_proj.weight": (inner, hidden),
                    p + "mlp.down_proj.weight": (hidden, inner), p + "input_layernorm.weight": (hidden,),
                    p + "post_attention_layernorm.weight": (hidden,)})
    out.update({VISION + "embeddings.class_embedding": (width,),
                VISION + "embeddings.patch_embedding.weight": (width, 3, patch, patch),
                VISION + "embeddings.position_embedding.weight": ((image // patch) ** 2 + 1, width)})
    for norm in ("pre_layrnorm", "post_layernorm"):
        out.update({VISION + f"{norm}.weight": (width,), VISION + f"{norm}.bias": (width,)})
    for j in range(vision_layers):
        p = VISION + f"encoder.layers.{j}."
        for x in ("q", "k", "v", "out"):
            out.update({p + f"self_attn.{x}_proj.weight": (width, width), p + f"self_attn.{x}_proj.bias": (width,)})
        for norm in ("layer_norm1", "layer_norm2"):
            out.update({p + f"{norm}.weight": (width,), p + f"{norm}.bias": (width,)})
        out.update({p + "mlp.fc1.weight": (width_inner, width), p + "mlp.fc1.bias": (width_inner,),
                    p + "mlp.fc2.weight": (width, width_inner), p + "mlp.fc2.bias": (width,)})
    heads = {"mm_projector": (hidden, width), "text_hidden_fcs.0.0": (latent, hidden), "pred_act_mlps": (half, hidden),
             "pred_pos_act": (3, half), "pred_rot_act": (6, half), "pred_gripper_act": (1, half)}
    for name, (rows, cols) in heads.items():
        out.update({f"model.{name}.weight": (rows, cols), f"model.{name}.bias": (rows,)})
    return out


def model_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def inv_freq(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))


def release_file_content(seed: int = 0) -> dict[str, torch.Tensor]:
    """A toy-width "released" state dict: the released names and shapes, random values, plus what
    transformers 4.31 saved beside them (rotary inv_freq per layer) under peft's prefix."""
    g = torch.Generator().manual_seed(seed)
    weights = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in released_shapes(**TINY).items()}
    hidden, _, _, layers = TINY["text"]
    for i in range(layers):
        weights[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq(hidden // 4)
    return {"base_model.model." + k: v for k, v in weights.items()}


def unprefixed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("base_model.model."): v for k, v in weights.items() if "rotary_emb" not in k}


@pytest.fixture(scope="module")
def tiny():
    return OpenHelixSystem2.from_config("tiny-openhelix").eval()


# --- the module tree -------------------------------------------------------------------------------------


def test_full_size_tree_is_the_released_one_on_meta():
    with torch.device("meta"):
        model = OpenHelixSystem2.from_config("openhelix-7b")
    expected = released_shapes(**RELEASE_7B)
    assert len(expected) == 291 + 391 + 2 + 2 + 8 == 694  # LLaMA-7B, CLIP ViT-L/14, projector, goal, aux
    assert model_shapes(model) == expected
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert isinstance(model.model.text_hidden_fcs, torch.nn.ModuleList)
    assert isinstance(model.model.text_hidden_fcs[0], torch.nn.Sequential) and len(model.model.text_hidden_fcs[0]) == 1
    assert model.config.special_token_ids == {"<im_patch>": 32000, "<im_start>": 32001, "<im_end>": 32002,
                                              "<ACT>": 32003}
    assert model.config.num_image_tokens == 256 and model.config.latent_dim == 512
    assert model.tokenizer is None  # no LLaVA tokenizer here: the structure alone


def test_tiny_has_the_same_tree_and_token_layout(tiny):
    assert model_shapes(tiny) == released_shapes(**TINY)
    tok = tiny.tokenizer
    assert len(tok) == 264 == 260 + 4  # byte-level base vocabulary + the four added tokens
    assert tok.convert_tokens_to_ids(["<im_patch>", "<im_start>", "<im_end>", "<ACT>"]) == [260, 261, 262, 263]
    assert tiny.config.act_token_id == tiny.config.vocab_size - 1


def test_config_refuses_an_act_id_that_is_not_the_last():
    with pytest.raises(ValueError, match="last id of the vocabulary"):
        OpenHelixSystem2Config.preset("openhelix-7b", act_token_id=32000)
    cfg = OpenHelixSystem2Config.preset("tiny-openhelix", question_index=0)
    assert OpenHelixSystem2Config.from_dict(cfg.to_dict()) == cfg


# --- prompt and tokens -----------------------------------------------------------------------------------


def test_prompt_string_and_ids_are_the_releases(tiny):
    assert tiny.prompt("open the drawer", 1) == (
        f"{SYSTEM} USER: <im_start><image><im_end>\nCan you control the robot to open the drawer? ASSISTANT: <ACT>")
    ids = tiny.prompt_token_ids("open the drawer", 1)
    tok = tiny.tokenizer
    start, end = ids.index(261), ids.index(262)
    assert ids[0] == tok.bos_token_id and ids[-1] == 263 and ids.count(263) == 1  # <ACT> is the last token
    assert ids[start + 1:end] == [260] * 16 and ids.count(260) == 16  # <image> -> 16 patch positions
    # the whitespace next to the added tokens is stripped, as transformers 4.31's slow tokenizer did
    assert tok.decode(ids[1:start]) == f"{SYSTEM} USER:"
    assert tok.decode(ids[end + 1:-1]) == "Can you control the robot to open the drawer? ASSISTANT:"
    plain = tiny.prompt_token_ids("open the drawer", 0)
    assert tok.decode(plain[plain.index(262) + 1:-1]) == "Can you open the drawer? ASSISTANT:"
    batch = tiny.tokenize(["open the drawer", "push the sliding door to the left"], [1, 0])
    for row, act, mask in zip(batch["input_ids"], batch["act_index"], batch["attention_mask"], strict=True):
        assert row[act] == 263 and int(mask.sum()) == act + 1


def test_question_is_drawn_like_the_release(tiny):
    drawn = {tiny.choose_question(seed) for seed in range(40)}
    assert drawn == {0, 1}  # both of the release's questions
    assert [tiny.choose_question(7) for _ in range(3)] == [tiny.choose_question(7)] * 3
    fixed = OpenHelixSystem2.from_config("tiny-openhelix", question_index=0)
    assert {fixed.choose_question(seed) for seed in range(10)} == {0}
    a, b = OpenHelixSystem2.from_config("tiny-openhelix"), OpenHelixSystem2.from_config("tiny-openhelix")
    stream = [a.choose_question(None) for _ in range(20)]
    assert stream == [b.choose_question(None) for _ in range(20)] and set(stream) == {0, 1}


def test_bad_inputs_are_refused_by_name(tiny):
    with pytest.raises(System2InputError, match="non-empty"):
        tiny.encode(IMAGE, "  ")
    with pytest.raises(System2InputError, match="<ACT>"):
        tiny.encode(IMAGE, "open the drawer <ACT>")
    with pytest.raises(System2InputError, match="max_instruction_tokens"):
        tiny.check_instruction_length("x" * 129)  # a byte per token
    assert tiny.check_instruction_length("open the drawer") == 15
    with pytest.raises(System2InputError, match="HxWx3"):
        tiny.encode(IMAGE[..., :2], "open the drawer")
    with pytest.raises(System2InputError, match="NaN"):
        tiny.encode(np.full((8, 8, 3), np.nan), "open the drawer")


# --- the latent and the aux head -------------------------------------------------------------------------


def test_encode_is_finite_deterministic_and_depends_on_inputs(tiny):
    latent = tiny.encode(IMAGE, "open the drawer")
    assert latent.shape == (32,) and latent.dtype == torch.float32 and torch.isfinite(latent).all()
    assert torch.equal(latent, tiny.encode(IMAGE, "open the drawer"))
    assert not torch.equal(latent, tiny.encode(IMAGE, "lift the red block"))
    assert not torch.equal(latent, tiny.encode(255 - IMAGE, "open the drawer"))
    # floats in [0, 1] become the same bytes, as in the release (rgb / 255, then * 255 -> uint8)
    assert torch.equal(latent, tiny.encode(IMAGE / 255.0, "open the drawer"))


def test_latent_is_the_goal_projection_of_the_normed_state_at_act():
    model = OpenHelixSystem2.from_config("tiny-openhelix").eval()
    with torch.no_grad():
        model.model.norm.weight.fill_(1.0)
        out = model(model.preprocess_images(IMAGE), ["open the drawer"], [1])
    hidden = out["act_hidden"][0]
    # after the final RMSNorm (unit weights): root mean square 1, but for eps 1e-6 against the stream's ~1e-3
    assert torch.allclose(hidden.square().mean().sqrt(), torch.tensor(1.0), atol=5e-3)
    assert torch.allclose(out["latent"][0], model.model.text_hidden_fcs[0](hidden), atol=1e-6)


def test_aux_head_is_affine_in_float32_with_the_released_outputs(tiny):
    g = torch.Generator().manual_seed(0)
    h1, h2 = torch.randn(2, 64, generator=g), torch.randn(2, 64, generator=g)
    aux = tiny.aux_actions(h1)
    assert {k: tuple(v.shape) for k, v in aux.items()} == {"position": (2, 3), "rot6d": (2, 6), "gripper": (2, 1),
                                                            "act_pred": (2, 10)}
    assert torch.equal(aux["act_pred"], torch.cat([aux["position"], aux["rot6d"], aux["gripper"]], -1))
    f = lambda h: tiny.aux_actions(h)["act_pred"]  # noqa: E731
    # no nonlinearity anywhere (planer.py): f(a + b) - f(a) - f(b) + f(0) = 0
    assert torch.allclose(f(h1 + h2) - f(h1) - f(h2) + f(torch.zeros_like(h1)), torch.zeros(2, 10), atol=1e-5)
    assert aux["position"].dtype == torch.float32


# --- loading ---------------------------------------------------------------------------------------------


def test_released_state_dict_loads_strictly_with_prefix_and_rotary_buffers():
    weights = release_file_content()
    for model in (OpenHelixSystem2.from_config("tiny-openhelix"),
                  OpenHelixSystem2.empty(OpenHelixSystem2Config.preset("tiny-openhelix"))):
        report = model.load_released_state_dict(dict(weights), "release")
        assert report["dropped"] == [f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(2)]
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in unprefixed(weights).items())
        assert torch.isfinite(model.encode(IMAGE, "open the drawer")).all()


def full_size_meta_weights(**changes) -> dict[str, torch.Tensor]:
    shapes = {**released_shapes(**RELEASE_7B), **changes}
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


def test_a_32003_token_vocabulary_is_refused_naming_act():
    model = OpenHelixSystem2.empty(OpenHelixSystem2Config.preset("openhelix-7b"))
    weights = full_size_meta_weights(**{"model.embed_tokens.weight": (32003, 4096), "lm_head.weight": (32003, 4096)})
    with pytest.raises(CheckpointError) as error:
        model.load_released_state_dict(weights, "pytorch_model.bin")
    message = str(error.value)
    for needed in ("32003 rows", "32004 tokens", "<ACT>", "id 32003", "issue #7", "strict=False"):
        assert needed in message, needed


def test_missing_unexpected_and_misshapen_tensors_are_named():
    weights = unprefixed(release_file_content())
    del weights["model.pred_rot_act.bias"]
    weights["model.extra_head.weight"] = torch.zeros(2)
    weights["model.pred_pos_act.weight"] = torch.zeros(4, 32)
    model = OpenHelixSystem2.from_config("tiny-openhelix")
    with pytest.raises(CheckpointError) as error:
        model.load_released_state_dict(weights, "release")
    message = str(error.value)
    assert "missing from the checkpoint: model.pred_rot_act.bias" in message
    assert "unexpected tensor(s) in the checkpoint: model.extra_head.weight" in message
    assert "model.pred_pos_act.weight: checkpoint (4, 32) vs model (3, 32)" in message
    small = unprefixed(release_file_content())
    small["lm_head.weight"] = small["lm_head.weight"][:100]
    with pytest.raises(CheckpointError, match="lm_head.weight has 100 rows.*not OpenHelix's MLLM"):
        model.load_released_state_dict(small, "release")


def test_rotary_buffers_of_another_rope_base_are_refused():
    weights = release_file_content()
    weights["base_model.model.model.layers.1.self_attn.rotary_emb.inv_freq"] = inv_freq(16, theta=1e6)
    with pytest.raises(CheckpointError, match=r"layers\.1\.self_attn\.rotary_emb\.inv_freq"):
        OpenHelixSystem2.from_config("tiny-openhelix").load_released_state_dict(weights, "release")


def test_a_tokenizer_without_the_release_layout_is_refused():
    three = byte_level_tokenizer(["<im_patch>", "<im_start>", "<ACT>"])  # <im_end> missing: <ACT> moves to 262
    with pytest.raises(CheckpointError, match="<ACT> is id 262, expected 263"):
        OpenHelixSystem2(OpenHelixSystem2Config.preset("tiny-openhelix"), tokenizer=three)


# --- files -----------------------------------------------------------------------------------------------


def write_shards(directory, weights, index: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    keys = sorted(weights)
    parts = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in parts.items():
        save_file({k: weights[k].contiguous() for k in part}, str(directory / name))
    if index:
        weight_map = {k: name for name, part in parts.items() for k in part}
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_release_weight_formats_read_alike(tmp_path):
    weights = release_file_content()
    write_shards(tmp_path / "indexed", weights)
    write_shards(tmp_path / "shards", weights, index=False)
    (tmp_path / "merged").mkdir()
    torch.save(weights, tmp_path / "merged" / "pytorch_model.bin")
    reads = [read_mllm_weights(tmp_path / d) for d in ("indexed", "shards", "merged")]
    reads.append(read_mllm_weights(tmp_path / "merged" / "pytorch_model.bin"))
    for read in reads:
        assert read.keys() == weights.keys() and all(torch.equal(read[k], v) for k, v in weights.items())


def test_broken_release_files_are_named(tmp_path):
    weights = release_file_content()
    write_shards(tmp_path / "gone", weights)
    (tmp_path / "gone" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing: model-00002-of-00002.safetensors"):
        read_mllm_weights(tmp_path / "gone")
    write_shards(tmp_path / "unlisted", weights)
    index = json.loads((tmp_path / "unlisted" / "model.safetensors.index.json").read_text())
    index["weight_map"].pop("base_model.model.lm_head.weight")
    (tmp_path / "unlisted" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not list.*lm_head"):
        read_mllm_weights(tmp_path / "unlisted")
    torch.save({"weight": "not a tensor"}, tmp_path / "odd.bin")
    with pytest.raises(CheckpointError, match="flat dict of tensors"):
        read_mllm_weights(tmp_path / "odd.bin")


def write_clip_dir(directory, weights, transformers4_names: bool) -> None:
    """A local CLIP vision directory: config.json and the tower's tensors, under transformers 4's names
    (vision_model.*, as openai/clip-vit-large-patch14 ships them) or 5's (without that level)."""
    directory.mkdir(parents=True)
    hidden, inner, layers, patch, image = TINY["vision"]
    (directory / "config.json").write_text(json.dumps(dict(
        model_type="clip_vision_model", hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers,
        num_attention_heads=2, patch_size=patch, image_size=image, hidden_act="quick_gelu")))
    prefix = "vision_model." if transformers4_names else ""
    tower = {prefix + k[len(VISION):]: v for k, v in weights.items() if k.startswith(VISION)}
    tower["text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 4)  # a CLIPModel's text side: ignored
    save_file(tower, str(directory / "model.safetensors"))


@pytest.mark.parametrize("transformers4_names", [True, False])
def test_import_takes_the_tower_from_the_clip_directory(tmp_path, transformers4_names):
    weights = unprefixed(release_file_content())
    without_tower = {k: v for k, v in weights.items() if not k.startswith(VISION)}
    write_shards(tmp_path / "llava_ckpt_safetensors", without_tower)
    write_clip_dir(tmp_path / "clip", weights, transformers4_names)
    with pytest.raises(CheckpointError, match="no vision tower.*vision_tower_dir"):
        load_openhelix_mllm(tmp_path / "llava_ckpt_safetensors", preset="tiny-openhelix")
    out = import_openhelix_mllm(tmp_path / "llava_ckpt_safetensors", tmp_path / "clip", tmp_path / "out",
                                preset="tiny-openhelix")
    assert json.loads((out / "config.json").read_text())["model_type"] == OPENHELIX_SYSTEM2_MODEL_TYPE
    assert load_file(str(out / "model.safetensors")).keys() == weights.keys()
    loaded = OpenHelixSystem2.from_pretrained(out)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in weights.items())
    direct = load_openhelix_mllm(tmp_path / "llava_ckpt_safetensors", tmp_path / "clip", preset="tiny-openhelix")
    assert torch.equal(loaded.encode(IMAGE, "open the drawer"), direct.encode(IMAGE, "open the drawer"))


def test_a_llama_preset_without_a_tokenizer_is_refused(tmp_path):
    write_shards(tmp_path / "w", release_file_content())
    with pytest.raises(CheckpointError, match="tokenizer_dir"):
        load_openhelix_mllm(tmp_path / "w", preset="openhelix-7b")


def test_save_and_load_give_the_same_latent(tiny, tmp_path):
    directory = tiny.save_pretrained(tmp_path / "s2")
    meta = json.loads((directory / "config.json").read_text())
    assert meta["model_type"] == "openhelix_lisa_system2" != "openhelix_system2"
    assert set(load_file(str(directory / "model.safetensors"))) == set(released_shapes(**TINY))
    loaded = OpenHelixSystem2.from_pretrained(directory)
    assert not loaded.training and loaded.config == tiny.config
    assert torch.equal(loaded.encode(IMAGE, "open the drawer"), tiny.encode(IMAGE, "open the drawer"))


@pytest.mark.skipif(not os.environ.get("OPENHELIX_MLLM_WEIGHTS"),
                    reason="needs the released MLLM weights: OPENHELIX_MLLM_WEIGHTS, OPENHELIX_LLAVA_DIR "
                           "(its tokenizer) and OPENHELIX_CLIP_DIR (clip-vit-large-patch14)")
def test_the_released_weights_load_strictly():
    model = load_openhelix_mllm(os.environ["OPENHELIX_MLLM_WEIGHTS"], os.environ.get("OPENHELIX_CLIP_DIR"),
                                os.environ["OPENHELIX_LLAVA_DIR"])
    assert model.tokenizer.convert_tokens_to_ids("<ACT>") == 32003 and len(model.tokenizer) == 32004
    if torch.cuda.is_available():
        model.to("cuda")
    latent = model.encode(IMAGE, "open the drawer")
    assert latent.shape == (512,) and torch.isfinite(latent).all()
