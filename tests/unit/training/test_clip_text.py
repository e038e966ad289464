"""The clip-text System 2 (3D Diffuser Actor's frozen CLIP text encoder, the "Only Policy" baseline): 16
token states per instruction, nothing trained, a local CLIP directory loaded offline, refusals by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openhelix_training import ClipTextSystem2, System1, load_checkpoint
from openhelix_training.train import Trainer, load_train_config


@pytest.fixture(scope="module")
def tiny():
    return ClipTextSystem2.from_config("tiny-clip-text")


def test_the_latent_is_sixteen_token_states_of_the_instruction_with_a_period(tiny):
    goal = tiny.encode_goal(None, "open the drawer")
    assert goal.tokens.shape == (16, 32) and goal.coarse is None
    states = tiny.text_model(**tiny.tokenizer(["open the drawer."], padding="max_length", max_length=16,
                                              return_tensors="pt")).last_hidden_state[0]
    np.testing.assert_allclose(goal.tokens, states.detach().numpy(), atol=1e-6)
    assert not np.allclose(goal.tokens, tiny.encode_goal(None, "close the drawer").tokens)
    assert tiny.encode(None, "open the drawer").shape == (16 * 32,)
    assert tiny.trainable_parameter_count() == 0 and tiny.head_parameters() == []
    assert not any(p.requires_grad for p in tiny.parameters())


def test_bad_instructions_are_refused_by_name(tiny):
    with pytest.raises(ValueError, match="non-empty string"):
        tiny.encode_goal(None, "  ")
    with pytest.raises(ValueError, match="more than max_instruction_tokens=128"):
        tiny.encode_goal(None, "open the drawer " * 20)
    with pytest.raises(ValueError, match="model_path=<a local transformers CLIP directory>"):
        ClipTextSystem2.from_config("clip-text")


def write_clip_directory(path) -> None:
    """A CLIP directory as transformers writes it: random CLIPTextModel weights and a CLIPTokenizer whose
    vocabulary is CLIP's byte alphabet (with and without the end-of-word mark), no merges."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(alphabet + [a + "</w>" for a in alphabet]
                                                + ["<|startoftext|>", "<|endoftext|>"])}
    path.mkdir()
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"),
                              pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"])
    CLIPTextModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def test_a_local_clip_directory_loads_offline_and_is_not_copied_into_checkpoints(tmp_path):
    write_clip_directory(tmp_path / "clip")
    model = ClipTextSystem2.from_config("clip-text", model_path=str(tmp_path / "clip"))
    goal = model.encode_goal(None, "push the red block left")
    assert goal.tokens.shape == (16, 24) and model.config.latent_dim == 24
    ids = model.tokenizer("open the drawer.", padding="max_length", max_length=16)["input_ids"]
    assert ids[0] == model.tokenizer.convert_tokens_to_ids("<|startoftext|>") and len(ids) == 16
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").stat().st_size < 10_000  # the user's CLIP stays theirs
    again = ClipTextSystem2.from_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(again.encode_goal(None, "push the red block left").tokens, goal.tokens, atol=1e-6)


def test_the_only_policy_baseline_trains_a_token_policy_on_clip_text(tmp_path, small_calvin_dir):
    cfg = load_train_config(None, [
        f"output_dir={tmp_path / 'run'}", f"data.path={small_calvin_dir}", "training.progress=false",
        "training.batch_size=4", "training.stage1_steps=0", "training.stage2_steps=2", "training.cache_latents=true",
        "system2.preset=tiny-clip-text", "system1.overrides={latent_layout: tokens, max_latent_tokens: 16}"])
    result = Trainer(cfg).run()
    assert result["steps"] == 2
    loaded = load_checkpoint(tmp_path / "run")
    assert isinstance(loaded.system2, ClipTextSystem2) and isinstance(loaded.system1, System1)
    bad = load_train_config(None, [f"output_dir={tmp_path / 'bad'}", f"data.path={small_calvin_dir}",
                                   "system2.preset=tiny-clip-text", "training.aux_loss=true"])
    with pytest.raises(ValueError, match="trains nothing"):
        Trainer(bad)
