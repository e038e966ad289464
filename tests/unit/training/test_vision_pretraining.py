"""System 2's vision pretraining (openhelix_training.vision_pretraining) on real simulator scenes, with the
tiny random System 2 so that each stage runs in seconds; the shipped `embedded` weights are checked at
the end."""

from __future__ import annotations

import pytest
import torch

from openhelix_ros.sim.captions import write_captioned_scenes
from openhelix_training import vision_pretraining as vp
from openhelix_training.configuration_system2 import System2Config
from openhelix_training.modeling_system2 import (
    System2,
    load_vision_weights,
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
    features = torch.randn(2, model.num_image_tokens, model.hidden_size)
    inputs = conversation.batch(features, [[("Is the drawer open or closed?", "open")],
                                           [("Where is the red block?", "drawer"), ("Is the led on?", "on")]])
    user = len(conversation.user)
    assert torch.equal(inputs["inputs_embeds"][0, user:user + model.num_image_tokens], features[0])
    for row, answers in enumerate([["open"], ["drawer", "on"]]):
        predicted = inputs["labels"][row][inputs["labels"][row] != -100].tolist()
        expected = [t for a in answers for t in conversation._ids(" " + a + conversation.eos)]
        assert predicted == expected
    assert inputs["attention_mask"][0].sum() < inputs["attention_mask"][1].sum()


def test_answers_are_scored_by_the_token_that_tells_them_apart(scenes):
    conversation = vp.Conversation(tiny())  # byte-level: every answer starts with the space
    shared, own = vp.answer_tokens(conversation, ("left", "right"))
    assert shared == conversation._ids(" ") and len(set(own)) == 2
    with pytest.raises(ValueError, match="told apart"):
        vp.answer_tokens(conversation, ("left", "left cabinet"))
    model = tiny()
    questions = [[(f["question"], tuple(f["choices"])) for f in r["facts"]] for r in scenes.records[:2]]
    answers = vp.ask(model, scenes.images[:2], questions)
    assert [len(a) for a in answers] == [len(q) for q in questions]
    assert all(a in dict(q)[question] for qs, ans in zip(questions, answers, strict=True)
               for (question, _), a, q in zip(qs, ans, [qs] * len(qs), strict=True))
    captions = vp.describe(model, scenes.images[:2], max_tokens=5)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_prior_is_the_most_common_training_answer():
    records = [{"caption": "", "facts": [{"key": "drawer", "clause": "", "question": "q", "answer": a,
                                          "choices": ["open", "closed"]}]} for a in ("open", "open", "closed")]
    scenes = vp.SceneSet(path=None, images=None, records=records)
    report = vp.evaluate(None, scenes, vp.VisionPretrainConfig(eval_scenes=0), train_records=records)
    assert report["prior"]["accuracy"] == pytest.approx(2 / 3) and report["prior"]["by_key"] == {"drawer": 0.6667}


def test_exported_weights_load_by_path_and_refuse_another_architecture(tmp_path):
    source = tiny()
    with torch.no_grad():
        for p in source.mllm.model.vision_tower.parameters():
            p.add_(1.0)
    path = vp.export_vision_weights(source, tmp_path / "v.safetensors", {"recipe": "test"})
    loaded = System2(System2Config.preset("tiny", vision_weights=str(path)))
    for key, value in vision_state(source.mllm).items():
        assert torch.equal(vision_state(loaded.mllm)[key], value), key
    assert load_vision_weights(loaded.mllm, str(path)) == {"recipe": "test"}
    other = System2(System2Config.preset("tiny", vision=dict(image_size=32, patch_size=8, hidden_size=48,
                                                             intermediate_size=64, num_hidden_layers=2,
                                                             num_attention_heads=2, projection_dim=32)))
    with pytest.raises(ValueError, match="vision weights .* is"):
        load_vision_weights(other.mllm, str(path))
    with pytest.raises(FileNotFoundError, match="shipped names: playtable-v1"):
        System2Config.preset("tiny", vision_weights="nothing-v0") and load_vision_weights(other.mllm, "nothing-v0")
    with pytest.raises(ValueError, match="brings its own"):
        System2Config.preset("llava-1.5-7b", model_path="/x", vision_weights="playtable-v1")
