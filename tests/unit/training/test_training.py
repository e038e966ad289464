"""Two-stage training: stage 1 leaves the policy untouched, a tiny run overfits, the CLI writes
checkpoints and metrics, resume continues, load_checkpoint restores."""

import json

import numpy as np
import pytest
import torch

from openhelix_training import load_checkpoint
from openhelix_training.train import Trainer, load_train_config, main


def config(tmp_path, data_dir, *extra):
    return load_train_config(None, [
        f"output_dir={tmp_path / 'run'}", f"data.path={data_dir}", "training.progress=false",
        "training.batch_size=8", *extra])


def open_gates(system1):
    """Stands in for a pre-trained policy: AdaLN-zero gates start closed, so a fresh policy passes no
    gradient to the latent."""
    with torch.no_grad():
        system1.ada.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))


def test_stage1_leaves_policy_bit_identical(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=3", "training.stage2_steps=0",
                 "training.aux_loss=true", "training.aux_stages=[1, 2]", "training.clip_loss=true",
                 "training.heads_lr=1.0e-2", "training.mllm_lr=1.0e-2")
    trainer = Trainer(cfg)
    open_gates(trainer.s1)
    policy = {k: v.clone() for k, v in trainer.s1.state_dict().items()}
    act = trainer.s2.act_embedding.detach().clone()
    proj = trainer.s2.projector.weight.detach().clone()
    trainer.run()
    after = trainer.s1.state_dict()
    changed = [k for k in policy if not torch.equal(policy[k], after[k])]
    assert changed == [], f"stage 1 changed policy tensors: {changed}"
    assert not torch.equal(act, trainer.s2.act_embedding.detach()), "<ACT> did not train in stage 1"
    assert not torch.equal(proj, trainer.s2.projector.weight.detach()), "projector did not train in stage 1"
    # the vocabulary stays frozen in prompt tuning
    saved = load_checkpoint(tmp_path / "run")
    emb = saved.system2.mllm.model.language_model.get_input_embeddings().weight
    fresh = type(saved.system2).from_config("tiny").mllm.model.language_model.get_input_embeddings().weight
    assert torch.equal(emb, fresh)


def fixed_loss(trainer, batch):
    """The training loss with fixed noise and timesteps, so runs compare."""
    s1, s2 = trainer.s1, trainer.s2
    with torch.no_grad():
        latent = s2(s2.preprocess_images(batch["images"]), batch["instructions"])["latent"]
        obs = s1.observation_tensors(batch["observations"], np.random.default_rng(0))
        total = 0.0
        for seed in range(4):
            out = s1.compute_loss(obs, latent, batch["proprio"], batch["rel_positions"], batch["rot6d"],
                                  batch["gripper_open"], generator=torch.Generator().manual_seed(seed))
            total += float(out["loss"])
    return total / 4


def test_tiny_run_overfits(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=0", "training.stage2_steps=300",
                 "training.policy_lr=3.0e-3", "training.heads_lr=3.0e-3", "training.mllm_lr=3.0e-3",
                 "training.policy_weight_decay=0.0", "data.max_windows=1")
    trainer = Trainer(cfg)
    batch = next(iter(trainer.loader))
    before = fixed_loss(trainer, batch)
    result = trainer.run()
    after = fixed_loss(trainer, batch)
    print(f"fixed-noise loss {before:.3f} -> {after:.3f}")
    assert after < 0.3 * before, f"loss {before:.3f} -> {after:.3f}: not below 30% of the start"
    assert result["steps"] == 300


def test_cli_writes_checkpoints_metrics_and_resumes(tmp_path, small_calvin_dir, capsys):
    out = tmp_path / "cli"
    args = ["--config", "tiny", "--output-dir", str(out), "--set", f"data.path={small_calvin_dir}",
            "--set", "data.kind=calvin", "--set", "training.stage1_steps=2", "--set", "training.stage2_steps=3",
            "--set", "training.log_every=1", "--set", "training.progress=false"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["steps"] == 5
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5] and [m["stage"] for m in lines] == [1, 1, 2, 2, 2]
    assert all(np.isfinite(m["total"]) for m in lines) and "aux" in lines[-1]
    ck = out / "checkpoints" / "step_0000005"
    for part in ("system1", "system2"):
        meta = json.loads((ck / part / "config.json").read_text())
        assert "torch" in meta["versions"] and "git_revision" in meta
        assert (ck / part / "model.safetensors").is_file()
    assert "position_bounds" in json.loads((ck / "system1" / "normalization.json").read_text())
    assert (out / "checkpoints" / "step_0000002").is_dir()  # end of stage 1
    loaded = load_checkpoint(out)
    assert loaded.step == 5 and loaded.system1 is not None and loaded.system2 is not None
    # the inference API end to end, as the nodes use it
    from openhelix_training.data.calvin import CalvinDataset

    sample = CalvinDataset(small_calvin_dir)[0]
    latent = loaded.system2.encode(sample.image, sample.instruction)
    traj = loaded.system1.predict(sample.observation, latent, sample.proprio)
    assert traj.positions.shape == (20, 3) and np.all(np.isfinite(traj.positions))
    assert np.array_equal(traj.positions, loaded.system1.predict(sample.observation, latent, sample.proprio).positions)
    # resume: continue to 7 steps from the newest checkpoint
    assert main(args[:-6] + ["--set", "training.stage2_steps=5", "--set", "training.log_every=1",
                             "--set", "training.progress=false", "--resume", "auto"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines][-2:] == [6, 7]
    assert load_checkpoint(out).step == 7


def test_bad_config_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {stage_one: 3}\n")
    assert main(["--config", str(bad)]) == 2
    assert "stage_one" in capsys.readouterr().err


def test_latent_dims_must_agree(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "system2.overrides={latent_dim: 16}")
    with pytest.raises(ValueError, match="latent_dim"):
        Trainer(cfg)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one AcceleratorState per process (a real run sets precision once); tests that
    change it start and end from a clean state."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_bf16_mixed_precision_steps(tmp_path, small_calvin_dir, fresh_accelerator_state):
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=1", "training.stage2_steps=1",
                 "training.mixed_precision=bf16")
    result = Trainer(cfg).run()
    assert all(np.isfinite(m["total"]) for m in result["history"])


def test_training_is_reproducible_under_a_seed(tmp_path, small_calvin_dir):
    states = []
    for run in ("a", "b"):
        cfg = config(tmp_path / run, small_calvin_dir, "training.stage1_steps=0", "training.stage2_steps=3")
        trainer = Trainer(cfg)
        trainer.run()
        states.append({**trainer.s1.state_dict(), **{"s2." + k: v for k, v in trainer.s2.state_dict().items()}})
    assert states[0].keys() == states[1].keys()
    assert [k for k in states[0] if not torch.equal(states[0][k], states[1][k])] == []


def test_training_on_a_bag_with_the_point_cloud_policy(tmp_path):
    from openhelix_training.data.rosbag import write_synthetic_bag

    write_synthetic_bag(tmp_path / "bag")
    cfg = load_train_config(None, [
        f"output_dir={tmp_path / 'run'}", "data.kind=rosbag", f"data.path={tmp_path / 'bag'}",
        "system1.overrides={scene_encoder: points}", "training.stage1_steps=0", "training.stage2_steps=2",
        "training.batch_size=2", "training.progress=false"])
    result = Trainer(cfg).run()
    assert result["steps"] == 2 and all(np.isfinite(m["total"]) for m in result["history"])
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.system1.config.scene_encoder == "points"
    # the checkpoint says which tasks its policy was shown (openhelix demo evaluates those)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_0000002" / "training_state.json").read_text())
    assert state["data_tasks"] == ["open_drawer"]


def test_cached_latents_encode_each_instruction_once_and_match_the_node(tmp_path, small_calvin_dir):
    """Policy pre-training against a frozen System 2: latents come from a cache keyed by instruction (a
    text-only System 2), equal to what System2.encode (the node's call) gives, and System 2 stays as it
    was built, so its checkpoint reproduces them."""
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=0", "training.stage2_steps=3",
                 "training.cache_latents=true", "system2.overrides={mode: frozen, use_image: false}")
    trainer = Trainer(cfg)
    s2_before = {k: v.clone() for k, v in trainer.s2.state_dict().items()}
    calls = []
    trainer.s2.register_forward_hook(lambda _m, args, _out: calls.append(list(args[1])))
    trainer.run()
    encoded = [text for call in calls for text in call]
    assert sorted(encoded) == sorted(set(encoded)), "an instruction was encoded twice"
    assert set(trainer.latent_cache) == {(t,) for t in encoded}
    after = trainer.s2.state_dict()
    assert [k for k in s2_before if not torch.equal(s2_before[k], after[k])] == []
    loaded = load_checkpoint(tmp_path / "run")
    for (text,), (tokens, coarse) in trainer.latent_cache.items():
        assert tokens.shape == (1, 32) and coarse is None  # one <ACT> token, no coarse actions
        np.testing.assert_allclose(loaded.system2.encode(None, text).numpy(), tokens[0].numpy(), atol=1e-4)


def test_cached_latents_refuse_a_system2_that_trains(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=2", "training.cache_latents=true")
    with pytest.raises(ValueError, match="mode is 'prompt_tuning'.*stage1_steps"):
        Trainer(cfg)


def test_latent_normalization_is_set_from_the_training_latents_and_saved(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "training.stage1_steps=0", "training.stage2_steps=1",
                 "training.cache_latents=true", "training.latent_normalization=true",
                 "system2.overrides={mode: frozen, use_image: false}")
    trainer = Trainer(cfg)
    latents = torch.cat([tokens for tokens, _ in trainer.latent_cache.values()])
    assert len(latents) == len({trainer.dataset[i].instruction for i in range(len(trainer.dataset))}) >= 2
    torch.testing.assert_close(trainer.s1.latent_mean, latents.mean(0))
    centred = (latents - trainer.s1.latent_mean) / trainer.s1.latent_std
    assert float(centred.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
    trainer.run()
    loaded = load_checkpoint(tmp_path / "run").system1
    assert torch.equal(loaded.latent_mean, trainer.s1.latent_mean) and torch.equal(loaded.latent_std, trainer.s1.latent_std)


@pytest.mark.parametrize("cached", [False, True])
def test_a_multi_token_latent_with_coarse_actions_trains_and_reloads(tmp_path, small_calvin_dir, cached):
    """RoboDual's choices end to end: every language token and a 3-waypoint coarse chunk from System 2, a
    System 1 that reads token matrices and the chunk; live (aux loss on) or from the latent cache."""
    s2 = "{latent: {tokens: language, coarse_actions: 3}" + (", mode: frozen}" if cached else "}")
    extra = ["training.cache_latents=true", "training.latent_normalization=true", "training.stage1_steps=0"] if cached else [
        "training.aux_loss=true", "training.stage1_steps=1"]
    cfg = config(tmp_path, small_calvin_dir, "training.stage2_steps=2", f"system2.overrides={s2}",
                 "system1.overrides={latent_layout: tokens, coarse_actions: 3}", *extra)
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result["steps"] == (2 if cached else 3) and all(np.isfinite(h["loss"]) for h in result["history"])
    if cached:
        tokens, coarse = next(iter(trainer.latent_cache.values()))
        assert tokens.shape[0] > 1 and tokens.shape[1] == 32 and coarse.shape == (3, 10)
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.system2.config.latent.kind == "tokens" and loaded.system1.config.coarse_actions == 3
    goal = loaded.system2.encode_goal(np.zeros((48, 48, 3), np.uint8), "open the drawer")
    assert goal.num_tokens > 1 and len(goal.coarse) == 3


def test_a_policy_that_cannot_read_the_latent_is_refused_before_training(tmp_path, small_calvin_dir):
    cfg = config(tmp_path, small_calvin_dir, "system2.overrides={latent: {act_tokens: 4}}")
    with pytest.raises(ValueError, match="needs latent_layout 'tokens'"):
        Trainer(cfg)
    cfg = config(tmp_path, small_calvin_dir, "system2.overrides={latent: {tokens: all}}",
                 "system1.overrides={latent_layout: tokens, max_latent_tokens: 64}")
    with pytest.raises(ValueError, match=r"up to \d+ tokens \(its longest prompt\) but System 1 reads at most "
                                         "max_latent_tokens=64"):
        Trainer(cfg)
