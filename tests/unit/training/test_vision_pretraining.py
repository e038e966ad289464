"""System 2's vision pretraining (openhelix_training.vision_pretraining) on real simulator scenes, with the
tiny random System 2 so that each stage runs in seconds; the shipped `embedded` weights are checked at
the end."""

from __future__ import annotations

import json

import pytest
import torch

from openhelix_ros.sim.captions import write_captioned_scenes
from openhelix_training import vision_pretraining as vp
from openhelix_training.configuration_system2 import System2Config
from openhelix_training.modeling_system2 import (
    System2,
    load_vision_weights,
    shipped_vision_weights,
    shipped_vision_weights_file,
    vision_state,
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    path = write_captioned_scenes(tmp_path_factory.mktemp("scenes") / "train", 12, seed=5, shard_size=6)
    return vp.load_scene_set(path)


def _interrupt_at(step):
    seen = []

    def progress(n, loss):
        seen.append(n)
        if len(seen) == step:
            raise KeyboardInterrupt

    return progress


def tiny():
    return System2(System2Config.preset("tiny"))


def test_a_scene_set_loads_whole_and_names_its_facts(scenes):
    assert len(scenes) == 12 and scenes.images.shape == (12, 200, 200, 3)
    vocabulary = vp.fact_vocabulary(scenes.records)
    assert {"door", "led", "lightbulb", "block_red.place"} <= set(vocabulary)
    assert vocabulary["block_red.place"][0] == "table"
    assert len(vp.load_scene_set(scenes.path, limit=7)) == 7
    with pytest.raises(FileNotFoundError, match="manifest"):
        vp.load_scene_set(scenes.path / "nowhere")


def test_the_tower_learns_the_facts(scenes, tmp_path):
    model = tiny()
    cfg = vp.VisionPretrainConfig(tower_steps=300, tower_batch=12, tower_lr=1e-2, warmup_steps=2, checkpoint_every=100)
    result = vp.train_tower(model, scenes, cfg, tmp_path)
    losses = [r["loss"] for r in result["log"]]
    assert result["steps"] == 300 and sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert not any(p.requires_grad for p in model.mllm.model.vision_tower.parameters())
    report = vp.evaluate(model, scenes, vp.VisionPretrainConfig(eval_scenes=0), vp.load_fact_queries(model, tmp_path),
                         scenes.records)
    # on its own training scenes: it has learnt them, where the most common answer gets about half
    assert report["tower"]["accuracy"] > report["prior"]["accuracy"] + 0.2
    assert "vqa" not in report and report["tower"]["facts"] == sum(len(r["facts"]) for r in scenes.records)


def test_an_interrupted_tower_resumes_to_the_same_weights(scenes, tmp_path):
    cfg = vp.VisionPretrainConfig(tower_steps=40, tower_batch=12, tower_lr=3e-3, warmup_steps=2, checkpoint_every=20)
    model = tiny()
    vp.train_tower(model, scenes, cfg, tmp_path / "whole")
    # interrupted after step 25 (saved at 20), then resumed by a new model: the uninterrupted run's tower
    with pytest.raises(KeyboardInterrupt):
        vp.train_tower(tiny(), scenes, cfg, tmp_path / "cut", progress=_interrupt_at(25))
    assert torch.load(tmp_path / "cut" / "tower_state.pt", weights_only=True)["step"] == 20
    resumed = tiny()
    vp.train_tower(resumed, scenes, cfg, tmp_path / "cut")
    for (name, a), b in zip(model.mllm.model.vision_tower.state_dict().items(),
                            resumed.mllm.model.vision_tower.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_alignment_trains_only_the_projector_on_the_answers(scenes, tmp_path):
    model = tiny()
    before = {k: v.clone() for k, v in model.mllm.state_dict().items()}
    cfg = vp.VisionPretrainConfig(align_steps=6, align_batch=4, align_lr=1e-2, checkpoint_every=3)
    result = vp.align_projector(model, scenes, cfg, tmp_path)
    assert result["steps"] == 6 and all(r["tokens"] > 0 for r in result["log"])
    changed = {k for k, v in model.mllm.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)
    assert not any(p.requires_grad for p in model.mllm.parameters())
    with pytest.raises(KeyboardInterrupt):
        vp.align_projector(tiny(), scenes, cfg, tmp_path / "cut", progress=_interrupt_at(4))
    resumed = tiny()
    vp.align_projector(resumed, scenes, cfg, tmp_path / "cut")
    assert torch.equal(resumed.mllm.model.multi_modal_projector.linear_2.weight,
                       model.mllm.model.multi_modal_projector.linear_2.weight)
    fresh = tiny()
    vp.load_align_state(fresh, tmp_path)
    assert torch.equal(fresh.mllm.model.multi_modal_projector.linear_1.weight,
                       model.mllm.model.multi_modal_projector.linear_1.weight)


def test_a_conversation_counts_the_answers_and_places_the_image(scenes):
    model = tiny()
    conversation = vp.Conversation(model)
    # the prefix the batch shares is System 2's own prompt up to its first image token
    prompt = model.tokenize(["open the drawer"])["input_ids"][0].tolist()
    assert conversation.prefix == prompt[: prompt.index(model.image_token_id)]
    features = torch.randn(2, model.num_image_tokens, model.hidden_size)
    turns = [[("Is the drawer open or closed?", "open")],
             [("Where is the red block?", "drawer"), ("Is the led on?", "on")]]
    inputs = conversation.batch(features, turns)
    n = model.num_image_tokens
    for row in range(2):
        assert torch.equal(inputs["inputs_embeds"][row, :n], features[row])
        ids, labels = inputs["input_ids"][row], inputs["labels"][row]
        counted = (labels != -100).nonzero().flatten()
        assert torch.equal(labels[counted], ids[counted + 1])  # position i predicts token i + 1
        # the first counted position is the one that ends the first "ASSISTANT:", and it predicts " answer"
        head = conversation._ids("\n" + turns[row][0][0] + " ASSISTANT:")
        assert int(counted[0]) == n + len(head) - 1
        expected = [t for _, a in turns[row] for t in conversation._ids(" " + a + conversation.eos)]
        assert labels[counted].tolist() == expected
    assert inputs["attention_mask"][0].sum() < inputs["attention_mask"][1].sum()


def _full_prompt_logits(model, conversation, image, question, suffix=()):
    """The LM's last logits over System 2's whole prompt, without the shared prefix cache."""
    lm = model.mllm.model.language_model
    feats = vp.image_tokens(model, model.preprocess_images([image]))
    head = conversation._ids("\n" + question + " ASSISTANT:") + list(suffix)
    emb = torch.cat([conversation.embed(torch.tensor([conversation.prefix])), feats,
                     conversation.embed(torch.tensor([head]))], dim=1)
    return model.mllm.lm_head(lm(inputs_embeds=emb).last_hidden_state[0, -1])


@torch.inference_mode()
def test_answers_are_scored_by_the_token_that_tells_them_apart(scenes):
    model = tiny()
    conversation = vp.Conversation(model)  # byte-level: every answer starts with the space
    shared, own = vp.answer_tokens(conversation, ("left", "right"))
    assert shared == conversation._ids(" ") and len(set(own)) == 2
    with pytest.raises(ValueError, match="told apart"):
        vp.answer_tokens(conversation, ("left", "left cabinet"))
    questions = [[(f["question"], tuple(f["choices"])) for f in r["facts"]] for r in scenes.records[:2]]
    answers = vp.ask(model, scenes.images[:2], questions)
    # the batched, padded, prefix-cached answers are the ones a plain forward pass over each prompt gives
    for image, row, given in zip(scenes.images[:2], questions, answers, strict=True):
        assert len(given) == len(row)
        for (question, choices), answer in zip(row, given, strict=True):
            start, firsts = vp.answer_tokens(conversation, choices)
            logits = _full_prompt_logits(model, conversation, image, question, start)
            assert answer == choices[int(torch.argmax(logits[firsts]))]


@torch.inference_mode()
def test_a_caption_is_the_greedy_continuation(scenes):
    model = tiny()
    conversation = vp.Conversation(model)
    captions = vp.describe(model, scenes.images[:2], max_tokens=6)
    for image, text in zip(scenes.images[:2], captions, strict=True):
        tokens = []
        for _ in range(6):  # without the cache: the whole prompt and what was generated, every token
            logits = _full_prompt_logits(model, conversation, image, vp.CAPTION_QUESTION, tokens)
            tokens.append(int(torch.argmax(logits)))
        eos = model.tokenizer.convert_tokens_to_ids(conversation.eos)
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        assert text == model.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def test_prior_is_the_most_common_training_answer():
    records = [{"caption": "", "facts": [{"key": "drawer", "clause": "", "question": "q", "answer": a,
                                          "choices": ["open", "closed"]}]} for a in ("open", "open", "closed")]
    scenes = vp.SceneSet(path=None, images=None, records=records)
    report = vp.evaluate(None, scenes, vp.VisionPretrainConfig(eval_scenes=0), train_records=records)
    assert report["prior"]["accuracy"] == pytest.approx(2 / 3) and report["prior"]["by_key"] == {"drawer": 0.6667}


def test_a_saved_model_pins_its_vision_weights(tmp_path):
    source = tiny()
    path = vp.export_vision_weights(source, tmp_path / "v.safetensors", {"recipe": "test"})
    cfg = System2Config.preset("tiny", vision_weights=str(path), save_mllm=False)
    model = System2(cfg)
    assert len(model.config.vision_weights_sha256) == 64
    model.save_pretrained(tmp_path / "saved")
    again = System2.from_pretrained(tmp_path / "saved")  # the base MLLM rebuilt, the file loaded again
    assert torch.equal(vision_state(again.mllm)["vision_tower.embeddings.patch_embedding.weight"],
                       vision_state(source.mllm)["vision_tower.embeddings.patch_embedding.weight"])
    with torch.no_grad():
        source.mllm.model.multi_modal_projector.linear_1.weight.add_(1.0)
    vp.export_vision_weights(source, path, {"recipe": "test"})  # other bytes under the same path
    with pytest.raises(ValueError, match="the file changed since"):
        System2.from_pretrained(tmp_path / "saved")


def test_exported_weights_load_by_path_and_refuse_another_architecture(tmp_path):
    source = tiny()
    with torch.no_grad():
        for p in source.mllm.model.vision_tower.parameters():
            p.add_(1.0)
    path = vp.export_vision_weights(source, tmp_path / "v.safetensors", {"recipe": "test"})
    loaded = System2(System2Config.preset("tiny", vision_weights=str(path)))
    for key, value in vision_state(source.mllm).items():
        assert torch.equal(vision_state(loaded.mllm)[key], value), key
    provenance = load_vision_weights(loaded.mllm, str(path))
    assert provenance["recipe"] == "test" and provenance["sha256"] == loaded.config.vision_weights_sha256
    other = System2(System2Config.preset("tiny", vision=dict(image_size=32, patch_size=8, hidden_size=48,
                                                             intermediate_size=64, num_hidden_layers=2,
                                                             num_attention_heads=2, projection_dim=32)))
    with pytest.raises(ValueError, match="vision weights .* is"):
        load_vision_weights(other.mllm, str(path))
    with pytest.raises(FileNotFoundError, match="shipped names: "):
        load_vision_weights(other.mllm, "nothing-v0")
    with pytest.raises(ValueError, match="brings its own"):
        System2Config.preset("llava-1.5-7b", model_path="/x", vision_weights="playtable-v1")


def test_the_embedded_preset_ships_its_play_table_vision_weights():
    cfg = System2Config.preset("embedded")
    assert cfg.vision_weights == "playtable-v1"
    assert "playtable-v1" in shipped_vision_weights()
    path = shipped_vision_weights_file("playtable-v1")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        provenance = json.loads(f.metadata()["provenance"])
        shape = f.get_slice("vision_tower.embeddings.patch_embedding.weight").get_shape()
    assert provenance["recipe"] == "openhelix reproduce --stage vision"
    # held-out: the tower reads the facts, and System 2's answers through the LM beat what a System 2 that
    # cannot see reaches (runs/reproduce/vision/report.md, copied beside the weights)
    assert provenance["heldout"]["tower"] > 0.9
    assert provenance["heldout"]["vqa"] > provenance["heldout"]["prior"] + 0.1
    assert path.with_suffix(".md").is_file()
    assert shape == [cfg.vision["hidden_size"], 3, cfg.vision["patch_size"], cfg.vision["patch_size"]]
    # a checkpoint saved before the weights existed keeps its seeded tower
    assert System2Config.from_dict({k: v for k, v in cfg.to_dict().items() if k != "vision_weights"}).vision_weights == ""
