"""The survey's goal latents (System2Config.latent) and System 1's reading of them: shapes, which tokens
each option takes, gradients in every MLLM mode, coarse actions, persistence and refusals by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openhelix_training import Observation, System1, System2
from openhelix_training.configuration_system2 import LatentConfig
from openhelix_training.goal import (
    CoarseActions,
    LatentGoal,
    LatentGoalError,
    check_goal_fit,
    check_latent_goal,
)
from openhelix_training.modeling_system1 import proprio_from_robot_obs
from openhelix_training.train import aux_loss, goal_inputs

IMAGES = np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
INSTRUCTIONS = ["open the drawer", "push the red block to the left"]
OPTIONS = {
    "act": {"act": True},
    "act_tokens": {"act_tokens": 3},
    "pooled_max": {"pooled": "max"},
    "pooled_mean": {"pooled": "mean"},
    "pooled_map": {"pooled": "map"},
    "layer": {"layer": 1},
    "tokens_language": {"tokens": "language"},
    "tokens_all": {"tokens": "all"},
}


def build(latent, mode="prompt_tuning", **overrides) -> System2:
    return System2.from_config("tiny", latent=latent, mode=mode, **overrides)


def prompt_positions(model: System2, text: str) -> dict:
    """Where the image patches, the user turn and the <ACT> tokens lie in one instruction's prompt."""
    ids = model.tokenize([text])["input_ids"][0].tolist()
    user = len(model.tokenizer(f"{model.config.system_prompt} USER:", add_special_tokens=False)["input_ids"])
    image = [i for i, t in enumerate(ids) if t == model.image_token_id]
    return {"length": len(ids), "user": user, "last_image": image[-1], "image": len(image)}


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("mode", ["prompt_tuning", "lora", "frozen", "full"])
def test_every_latent_option_has_its_shape_and_trains_in_every_mode(name, mode):
    model = build(OPTIONS[name], mode)
    out = model(model.preprocess_images(IMAGES), INSTRUCTIONS)
    tokens, mask = out["latent_tokens"], out["latent_mask"]
    assert tokens.shape[0] == 2 and tokens.shape[2] == 32 and mask.shape == tokens.shape[:2]
    assert out["latent"].shape == (2, 32)
    expected = {"act_tokens": 3}.get(name, 1)
    if name.startswith("tokens"):
        rows = [prompt_positions(model, text) for text in INSTRUCTIONS]
        if name == "tokens_language":  # every token after the vision patches, <ACT> included
            counts = [r["length"] - r["last_image"] - 1 for r in rows]
        else:  # the whole user turn: the patches too
            counts = [r["length"] - r["user"] for r in rows]
        assert mask.sum(1).tolist() == counts and counts[0] != counts[1]
        assert torch.all(tokens[0, counts[0]:] == 0), "padding must be zero"
    else:
        assert tokens.shape[1] == expected and bool(mask.all())
    # the summary is the masked mean of the tokens
    mean = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(out["latent"], mean)

    (tokens.pow(2).sum() + out["aux"]["position"].sum()).backward()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "projector.weight" in with_grad and "aux_head.trunk.0.weight" in with_grad
    if name == "pooled_map":
        assert {n for n in with_grad if n.startswith("latent_pool.")}, "the MAP query must train"
    if mode == "lora":
        assert {n for n in with_grad if "lora_" in n}, f"{name}: no gradient reaches LoRA"
    if mode == "prompt_tuning" and name != "pooled_max":
        # (a max over 70 tokens need not pick <ACT> in any channel: its gradient may be zero there)
        assert "act_embedding" in with_grad, f"{name}: no gradient reaches <ACT>"
    if mode == "frozen":
        assert not {n for n in trained if n.startswith("mllm.") or n == "act_embedding"}
    if mode == "full":
        assert {n for n in with_grad if n.startswith("mllm.model.language_model.")}, f"{name}: the LM does not train"


def test_act_tokens_end_the_prompt_and_each_has_its_own_embedding():
    model = build({"act_tokens": 4})
    assert model.act_embedding.shape == (4, model.hidden_size)
    assert model.prompt("open the drawer").endswith("ASSISTANT: " + "<ACT>" * 4)
    assert model.trainable_parameter_count() == 4 * model.hidden_size
    out = model(model.preprocess_images(IMAGES[:1]), INSTRUCTIONS[:1])
    assert not torch.allclose(out["latent_tokens"][0, 0], out["latent_tokens"][0, 3])
    # one <ACT> keeps the released parameter shape
    assert build({"act": True}).act_embedding.shape == (64,)


def test_the_layer_latent_reads_a_middle_layer_and_pooling_differs():
    px = build("act").preprocess_images(IMAGES[:1])
    last = build("act")(px, INSTRUCTIONS[:1])["act_hidden"]
    middle = build({"layer": 1})(px, INSTRUCTIONS[:1])["act_hidden"]
    assert not torch.allclose(last, middle)
    pooled = {p: build({"pooled": p})(px, INSTRUCTIONS[:1])["act_hidden"] for p in ("mean", "max")}
    assert torch.all(pooled["max"] >= pooled["mean"] - 1e-6)
    with pytest.raises(ValueError, match="latent layer 7 is outside this MLLM's 0..2 hidden states"):
        build({"layer": 7})


def test_encode_goal_equals_the_batched_forward_and_carries_coarse_actions():
    model = build({"tokens": "language", "coarse_actions": 4})
    goal = model.encode_goal(IMAGES[0], INSTRUCTIONS[0])
    out = model.eval()(model.preprocess_images(IMAGES[:1]), INSTRUCTIONS[:1])
    np.testing.assert_allclose(goal.tokens, out["latent_tokens"][0].detach().numpy(), atol=1e-5)
    assert goal.coarse is not None and len(goal.coarse) == 4
    assert out["aux"]["position"].shape == (1, 4, 3)
    rotations = goal.coarse.rotations
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (4, 3, 3)),
                               atol=1e-5)
    assert np.all((goal.coarse.gripper_open >= 0) & (goal.coarse.gripper_open <= 1))
    with pytest.raises(ValueError, match="use encode_goal"):
        model.encode(IMAGES[0], INSTRUCTIONS[0])


def test_the_auxiliary_loss_of_a_coarse_chunk_reads_the_next_k_waypoints():
    batch = {"rel_positions": torch.zeros(2, 20, 3), "rot6d": torch.zeros(2, 20, 6), "gripper_open": torch.ones(2, 20)}
    batch["rel_positions"][:, 1:4] = 1.0
    aux = {"position": torch.ones(2, 3, 3), "rot6d": torch.zeros(2, 3, 6), "gripper_logit": torch.full((2, 3), 50.0)}
    assert float(aux_loss(aux, batch)) == pytest.approx(0.0, abs=1e-6)
    one = {"position": torch.ones(2, 3), "rot6d": torch.zeros(2, 6), "gripper_logit": torch.full((2,), 50.0)}
    assert float(aux_loss(one, batch)) == pytest.approx(0.0, abs=1e-6)


def test_latent_config_reads_the_short_form_and_names_what_is_wrong():
    assert LatentConfig.from_dict({"act_tokens": 4}) == LatentConfig(kind="act_tokens", num_tokens=4)
    assert LatentConfig.from_dict({"pooled": "map"}).pooling == "map"
    assert LatentConfig.from_dict({"tokens": "language", "coarse_actions": 8}).coarse_actions == 8
    assert LatentConfig.from_dict("act") == LatentConfig()
    full = LatentConfig(kind="layer", layer=16)
    assert LatentConfig.from_dict(dict(full.__dict__)) == full
    for bad, error in (({"pooled": "median"}, "pooling must be one of"),
                       ({"act_tokens": 4, "pooled": "max"}, "several kinds"),
                       ({"tokens": "vision"}, "token_set must be one of"),
                       ({"act_tokens": 0}, "integer in 1..64"),
                       ({"shape": 3}, "unknown latent keys"),
                       ({"kind": "act", "size": 1}, "unknown latent fields")):
        with pytest.raises(ValueError, match=error):
            LatentConfig.from_dict(bad)


def test_a_latent_option_survives_save_and_load(tmp_path):
    model = build({"act_tokens": 2, "coarse_actions": 3}, mode="lora")
    with torch.no_grad():
        model.act_embedding.add_(0.5)
    model.save_pretrained(tmp_path / "s2")
    loaded = System2.from_pretrained(tmp_path / "s2")
    assert loaded.config.latent == model.config.latent
    a, b = model.encode_goal(IMAGES[0], "open the drawer"), loaded.encode_goal(IMAGES[0], "open the drawer")
    np.testing.assert_allclose(a.tokens, b.tokens, atol=1e-6)
    np.testing.assert_allclose(a.coarse.positions, b.coarse.positions, atol=1e-6)


# ----- System 1 reading token matrices and coarse actions -------------------------------------------

def observation(seed=0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(points=rng.uniform(-0.3, 0.3, (600, 3)).astype(np.float32),
                       colors=rng.uniform(0, 1, (600, 3)).astype(np.float32))


PROPRIO = proprio_from_robot_obs(np.r_[0.1, 0.0, 0.5, 0.0, 0.0, 0.0, 0.08, np.zeros(7), 1.0])


def tokens_policy(**overrides) -> System1:
    torch.manual_seed(0)
    policy = System1.from_config("tiny", scene_encoder="points", latent_layout="tokens", **overrides)
    with torch.no_grad():  # open the AdaLN-zero gates so that the latent changes the prediction
        policy.ada.weight.normal_(0, 0.05)
    return policy


def test_system1_masks_padding_tokens_out():
    policy = tokens_policy().eval()
    rng = np.random.default_rng(1)
    tokens = torch.from_numpy(rng.normal(size=(1, 5, 32)).astype(np.float32))
    padded = torch.cat([tokens, torch.from_numpy(rng.normal(size=(1, 3, 32)).astype(np.float32)) * 100], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    obs = policy.observation_tensors([observation()])
    proprio = torch.from_numpy(PROPRIO)[None]
    plain = policy.sample(obs, tokens, proprio, generator=torch.Generator().manual_seed(0))
    masked = policy.sample(obs, padded, proprio, generator=torch.Generator().manual_seed(0), latent_mask=mask)
    torch.testing.assert_close(plain["relative_positions"], masked["relative_positions"])
    unmasked = policy.sample(obs, padded, proprio, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain["relative_positions"], unmasked["relative_positions"])


def test_system1_conditions_on_coarse_actions_and_refuses_goals_that_do_not_fit():
    policy = tokens_policy(coarse_actions=2).eval()
    tokens = np.random.default_rng(2).normal(size=(3, 32)).astype(np.float32)

    def goal(offset):
        return LatentGoal(tokens=tokens, coarse=CoarseActions(
            positions=np.full((2, 3), offset, np.float32), rotations=np.broadcast_to(np.eye(3), (2, 3, 3)).copy(),
            gripper_open=np.array([1.0, 0.0], np.float32)))

    near, far = policy.predict(observation(), goal(0.0), PROPRIO), policy.predict(observation(), goal(0.2), PROPRIO)
    assert not np.allclose(near.positions, far.positions), "the coarse actions changed nothing"
    with pytest.raises(ValueError, match="conditions on 2 coarse actions but the goal latent carries none"):
        policy.predict(observation(), tokens, PROPRIO)
    with pytest.raises(ValueError, match="tokens are 16-D but the receiver takes 32-D"):
        policy.predict(observation(), LatentGoal(tokens=tokens[:, :16], coarse=goal(0).coarse), PROPRIO)
    split = System1.from_config("tiny", scene_encoder="points")
    with pytest.raises(ValueError, match="latent must have 32 values in one token, got 3 x 32 tokens"):
        split.predict(observation(), LatentGoal(tokens=tokens), PROPRIO)


def test_check_goal_fit_says_what_to_change():
    s1 = System1.from_config("tiny", scene_encoder="points").config
    s1_tokens = System1.from_config("tiny", scene_encoder="points", latent_layout="tokens", coarse_actions=4).config
    check_goal_fit(build("act").config, s1)
    with pytest.raises(ValueError, match="needs latent_layout 'tokens'"):
        check_goal_fit(build({"tokens": "language"}).config, s1)
    with pytest.raises(ValueError, match="conditions on 4 coarse actions but System 2 sends 0"):
        check_goal_fit(build({"tokens": "language"}).config, s1_tokens)
    check_goal_fit(build({"tokens": "language", "coarse_actions": 4}).config, s1_tokens)
    with pytest.raises(ValueError, match="next waypoints of the 20-waypoint training trajectories: at most 19"):
        check_goal_fit(build({"tokens": "language", "coarse_actions": 20}).config,
                       System1.from_config("tiny", latent_layout="tokens", coarse_actions=20).config)


def test_the_longest_prompt_bounds_the_token_count():
    """What the trainer compares with System 1's max_latent_tokens before training: never fewer tokens
    than a real prompt gives."""
    long_text = "push the red block " * 6
    for latent in ({"tokens": "language"}, {"tokens": "all"}, {"act_tokens": 3}, {"pooled": "map"}):
        model = build(latent)
        out = model(model.preprocess_images(IMAGES[:1]), [long_text])
        assert out["latent_tokens"].shape[1] <= model.max_latent_tokens()


def test_goal_inputs_train_system1_end_to_end():
    s2 = build({"tokens": "language", "coarse_actions": 2})
    s1 = tokens_policy(coarse_actions=2)
    out2 = s2(s2.preprocess_images(IMAGES), INSTRUCTIONS)
    goal = goal_inputs(out2, 2)
    assert goal["coarse"].shape == (2, 2, 10) and not goal["coarse"].requires_grad
    obs = s1.observation_tensors([observation(0), observation(1)])
    losses = s1(obs, goal["latent"], torch.from_numpy(np.stack([PROPRIO] * 2)), torch.zeros(2, 20, 3),
                torch.zeros(2, 20, 6), torch.ones(2, 20), latent_mask=goal["latent_mask"], coarse=goal["coarse"])
    losses["loss"].backward()
    assert s2.act_embedding.grad is not None and s2.act_embedding.grad.abs().sum() > 0
    assert s1.coarse_in.weight.grad.abs().sum() > 0


def test_check_latent_goal_bounds_and_values():
    with pytest.raises(LatentGoalError, match=r"must be a \(num_tokens >= 1, token_dim >= 1\) matrix"):
        check_latent_goal(LatentGoal(tokens=np.zeros((0, 4), np.float32)))
    with pytest.raises(LatentGoalError, match="2 NaN or infinite values"):
        check_latent_goal(LatentGoal(tokens=np.array([[np.nan, np.inf, 0.0]], np.float32)))
    with pytest.raises(LatentGoalError, match="more than the limit of 4096"):
        check_latent_goal(LatentGoal(tokens=np.zeros((5000, 1), np.float32)))
    coarse = CoarseActions(positions=np.zeros((2, 3)), rotations=np.zeros((2, 3, 3)), gripper_open=np.array([0.5]))
    with pytest.raises(LatentGoalError, match="2 coarse poses but 1 coarse gripper values"):
        check_latent_goal(LatentGoal(tokens=np.zeros((1, 4), np.float32), coarse=coarse))
    coarse = CoarseActions(positions=np.zeros((1, 3)), rotations=np.eye(3)[None], gripper_open=np.array([2.0]))
    with pytest.raises(LatentGoalError, match=r"openness in \[0, 1\]"):
        check_latent_goal(LatentGoal(tokens=np.zeros((1, 4), np.float32), coarse=coarse))
