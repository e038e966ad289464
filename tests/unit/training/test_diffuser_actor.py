"""System 1 `3dda`: 3D Diffuser Actor's CALVIN model with the released module tree.

The released tensor lists (tests/support/ref/, 661 names and shapes each, from shared/ref/) are the
contract: the full-size presets must equal them on the meta device, and miniatures at toy widths carry
exactly the same names, so that generated "release files" load strictly, with DDP prefixes, through the
importer. Numerical agreement with the released code itself was checked by hand (README, "3D Diffuser
Actor"): that code needs dgl and a CLIP download, which do not install here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from openhelix_training import CheckpointError, DiffuserActor, DiffuserActorConfig
from openhelix_training.configuration_diffuser_actor import calvin_location_bounds
from openhelix_training.import_checkpoint import import_release_policy, load_release_policy
from openhelix_training.modeling_diffuser_actor import (
    RotaryMultiheadAttention,
    apply_rotary,
    farthest_point_sampling,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rot6d_to_matrix,
    rotary_3d,
)

REF = Path(__file__).resolve().parents[2] / "support" / "ref"


def released_shapes(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (REF / f"{name}.keys.tsv").read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return shapes


def model_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DiffuserActor.from_config("tiny-3dda").eval()


def tiny_inputs(cfg: DiffuserActorConfig, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    side, ncam = cfg.image_size, len(cfg.camera_names)
    rgb = torch.rand(batch, ncam, 3, side, side, generator=g)
    center = torch.tensor([0.05, -0.1, 0.55])
    pcd = center.view(1, 1, 3, 1, 1) + (torch.rand(batch, ncam, 3, side, side, generator=g) - 0.5) * 0.5
    q = torch.randn(batch, cfg.nhist, 4, generator=g)
    gripper = torch.cat([center + 0.02 * torch.randn(batch, cfg.nhist, 3, generator=g), q / q.norm(dim=-1, keepdim=True)], -1)
    instruction = torch.randn(batch, cfg.instruction_length, cfg.instruction_dim, generator=g)
    return rgb, pcd, instruction, gripper


def randomized(model: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict of random values (AdaLN included, which starts at zero) under the model's names."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v = torch.rand(v.shape, generator=g) + 0.5 if "running_var" in k else torch.randn(v.shape, generator=g) * 0.05
        out[k] = v
    return out


# --- the released names and shapes -------------------------------------------------------------------


@pytest.mark.parametrize("preset, release", [("3dda", "3dda_calvin_nohistory"), ("3dda-nhist3", "3dda_calvin_nhist3"),
                                             ("openhelix-policy", "3dda_calvin_nohistory")])
def test_the_full_size_presets_have_the_released_names_and_shapes(preset, release):
    with torch.device("meta"):
        model = DiffuserActor.from_config(preset)
    expected = released_shapes(release)
    assert len(expected) == 661
    assert model_shapes(model) == expected
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 38_316_896  # CLIP RN50, attnpool included, frozen as in the release
    assert trainable == (9_677_386 if preset != "3dda-nhist3" else 9_751_498)


def test_the_miniature_carries_exactly_the_released_names(tiny):
    assert set(tiny.state_dict()) == set(released_shapes("3dda_calvin_nohistory"))
    assert tiny.config.embedding_dim < 192 and tiny.config.backbone_width < 64


def test_the_released_bounds_are_the_union_of_the_four_scenes_widened_by_1_cm():
    lo, hi = calvin_location_bounds()
    np.testing.assert_allclose(lo, [-0.30205889, -0.25688798, -0.21557967], atol=1e-7)
    np.testing.assert_allclose(hi, [0.36127854, 0.33770842, 0.18373556], atol=1e-7)
    assert DiffuserActorConfig().location_bounds == (lo, hi)


# --- loading release files ---------------------------------------------------------------------------


def release_file(path: Path, model: torch.nn.Module, seed: int = 1, **change) -> Path:
    """A file laid out as the release saves one: DDP-prefixed weights, optimizer, iteration, best loss."""
    weights = {"module." + k: v for k, v in randomized(model, seed).items()}
    for key, value in change.items():
        if value is None:
            weights.pop(key)
        else:
            weights[key] = value
    torch.save({"weight": weights, "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999)}]},
                "iter": 600000, "best_loss": 0.25}, path)
    return path


def test_a_release_file_loads_strictly_and_imports_into_this_layout(tmp_path, tiny):
    path = release_file(tmp_path / "diffuser_actor_calvin_nohistory.pth", tiny)
    model = load_release_policy(path, "3dda", **_tiny_overrides())
    expected = {k[len("module."):]: v for k, v in torch.load(path, weights_only=True)["weight"].items()}
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    out = import_release_policy(path, tmp_path / "imported", "3dda", **_tiny_overrides())
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    again = DiffuserActor.from_pretrained(out)
    assert again.config == model.config
    rgb, pcd, instruction, gripper = tiny_inputs(model.config)
    torch.manual_seed(3)
    a = model.compute_trajectory(rgb, pcd, instruction, gripper)
    torch.manual_seed(3)
    b = again.eval().compute_trajectory(rgb, pcd, instruction, gripper)
    assert torch.equal(a, b)


def _tiny_overrides() -> dict:
    cfg = DiffuserActorConfig.preset("tiny-3dda")
    fields = ("embedding_dim", "num_attn_heads", "backbone_width", "backbone_heads", "backbone_output_dim",
              "backbone_input_resolution", "camera_resolution", "crop", "trajectory_length",
              "diffusion_timesteps", "num_inference_steps")
    return {f: getattr(cfg, f) for f in fields}


def test_the_history_length_comes_from_the_weights(tmp_path):
    torch.manual_seed(0)
    three = DiffuserActor.from_config("tiny-3dda", nhist=3)
    model = load_release_policy(release_file(tmp_path / "diffuser_actor_calvin.pth", three), "3dda", **_tiny_overrides())
    assert model.config.nhist == 3
    openhelix = load_release_policy(release_file(tmp_path / "policy.pth", three), "openhelix-policy", **_tiny_overrides())
    assert openhelix.config.instruction_length == 1


def test_every_mismatch_is_named(tmp_path, tiny):
    path = release_file(tmp_path / "bad.pth", tiny, **{
        "module.prediction_head.position_proj.weight": None,  # missing
        "module.prediction_head.extra_head.weight": torch.zeros(3),  # unexpected
        "module.encoder.instruction_encoder.weight": torch.zeros(24, 768),  # a 768-d text encoder's shape
    })
    with pytest.raises(CheckpointError) as error:
        load_release_policy(path, "3dda", **_tiny_overrides())
    text = str(error.value)
    assert "prediction_head.position_proj.weight" in text and "missing" in text
    assert "prediction_head.extra_head.weight" in text and "unexpected" in text
    assert "encoder.instruction_encoder.weight: checkpoint (24, 768) vs model (24, 512)" in text


def test_files_that_are_no_release_checkpoint_are_refused_by_name(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_release_policy(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_release_policy(tmp_path / "text.pth")
    # an object that only full unpickling builds (by calling into a module the file names)
    torch.save({"weight": {"a": torch.zeros(1)}, "extra": Fraction(1, 3)}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_release_policy(tmp_path / "code.pth")
    torch.save({"weight": {"module.a": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a 3D Diffuser Actor state dict"):
        load_release_policy(tmp_path / "other.pth")


# --- the network -------------------------------------------------------------------------------------


def test_a_prediction_is_a_trajectory_of_poses_within_the_bounds(tiny):
    cfg = tiny.config
    rgb, pcd, instruction, gripper = tiny_inputs(cfg, batch=2)
    torch.manual_seed(0)
    out = tiny.compute_trajectory(rgb, pcd, instruction, gripper)
    assert out.shape == (2, cfg.trajectory_length, 8)
    lo, hi = (torch.tensor(b) for b in cfg.location_bounds)
    assert torch.all(out[..., :3] >= lo - 1e-6) and torch.all(out[..., :3] <= hi + 1e-6)  # DDPM clips x0 to [-1, 1]
    torch.testing.assert_close(out[..., 3:7].norm(dim=-1), torch.ones(2, cfg.trajectory_length))
    assert torch.all((out[..., 7] >= 0) & (out[..., 7] <= 1))
    torch.manual_seed(0)
    assert torch.equal(out, tiny.compute_trajectory(rgb, pcd, instruction, gripper))
    g = torch.Generator().manual_seed(5)
    ddim = DiffuserActor(DiffuserActorConfig.from_dict({**cfg.to_dict(), "inference_scheduler": "ddim",
                                                        "num_inference_steps": 3}))
    ddim.load_state_dict(tiny.state_dict())
    assert ddim.eval().compute_trajectory(rgb, pcd, instruction, gripper, generator=g).shape == out.shape


def test_inputs_of_the_wrong_shape_are_refused_by_name(tiny):
    rgb, pcd, instruction, gripper = tiny_inputs(tiny.config)
    with pytest.raises(ValueError, match=r"rgb_obs must be \(B, 2, 3, 48, 48\)"):
        tiny.compute_trajectory(rgb[..., :40, :40], pcd, instruction, gripper)
    with pytest.raises(ValueError, match=r"instruction must be \(1, 2, 512\)"):
        tiny.compute_trajectory(rgb, pcd, instruction[:, :1], gripper)
    with pytest.raises(ValueError, match="curr_gripper must be"):
        tiny.compute_trajectory(rgb, pcd, instruction, gripper[..., :3])
    bad = pcd.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pcd_obs contains NaN"):
        tiny.compute_trajectory(rgb, bad, instruction, gripper)


def test_the_point_cloud_counts_only_relative_to_the_gripper(tiny):
    """`relative`: shifting the world (cloud and gripper together) leaves the relative prediction alone."""
    rgb, pcd, instruction, gripper = tiny_inputs(tiny.config)
    shift = torch.tensor([0.2, -0.1, 0.05])
    torch.manual_seed(1)
    a = tiny.compute_trajectory(rgb, pcd, instruction, gripper)
    torch.manual_seed(1)
    moved = torch.cat([gripper[..., :3] + shift, gripper[..., 3:]], -1)
    b = tiny.compute_trajectory(rgb, pcd + shift.view(1, 1, 3, 1, 1), instruction, moved)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_the_release_mixes_language_across_a_batch_only_for_several_tokens_and_samples(tiny):
    g = torch.Generator().manual_seed(0)
    attention = RotaryMultiheadAttention(24, 2)
    query = torch.randn(2, 5, 24, generator=g)

    def both(language):
        return (attention(query[: len(language)], language, language, release_batch_mixing=True),
                attention(query[: len(language)], language, language))

    mixed, own = both(torch.randn(2, 3, 24, generator=g))
    assert (mixed - own).abs().max() > 1e-2  # two samples of three tokens: each attends to a mix
    for language in (torch.randn(1, 3, 24, generator=g), torch.randn(2, 1, 24, generator=g)):
        mixed, own = both(language)  # one sample (CALVIN's evaluation) or one token (OpenHelix's latent)
        torch.testing.assert_close(mixed, own, atol=1e-6, rtol=0)
    unmixed = DiffuserActor(DiffuserActorConfig.from_dict({**tiny.config.to_dict(),
                                                           "release_language_batch_mixing": False})).eval()
    unmixed.load_state_dict(tiny.state_dict())
    inputs = tiny_inputs(tiny.config, batch=1)
    torch.manual_seed(2)
    a = tiny.compute_trajectory(*inputs)
    torch.manual_seed(2)
    torch.testing.assert_close(a, unmixed.compute_trajectory(*inputs), atol=1e-6, rtol=0)


def test_the_training_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = DiffuserActor.from_config("tiny-3dda").train()
    rgb, pcd, instruction, gripper = tiny_inputs(model.config, batch=2)
    steps = model.config.trajectory_length
    gt = torch.cat([0.03 * torch.linspace(0, 1, steps)[None, :, None].expand(2, steps, 3),
                    gripper[:, :1, 3:7].expand(2, steps, 4), torch.ones(2, steps, 1)], -1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for i in range(100):
        loss = model.compute_loss(gt, rgb, pcd, instruction, gripper, generator=torch.Generator().manual_seed(i % 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses
    assert all(p.grad is None for p in model.encoder.backbone.parameters())  # frozen


# --- the pieces --------------------------------------------------------------------------------------


def test_farthest_point_sampling_is_dgls_greedy_rule():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2, 60, 7, generator=g)
    picks = farthest_point_sampling(points, 12, start=0)
    for b in range(2):
        p = points[b].double().numpy()
        chosen, dist = [0], np.full(60, np.inf)
        for _ in range(11):
            dist = np.minimum(dist, ((p - p[chosen[-1]]) ** 2).sum(1))
            chosen.append(int(np.argmax(dist)))
        assert picks[b].tolist() == chosen
    assert len(set(picks[0].tolist())) == 12


def test_rotations_round_trip_through_6d_and_quaternions():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(50, 4, generator=g)
    q = q / q.norm(dim=-1, keepdim=True)
    m = quaternion_to_matrix(q)
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3).expand(50, 3, 3), atol=1e-5, rtol=0)
    back = matrix_to_quaternion(m)
    torch.testing.assert_close(back.abs(), q.abs(), atol=1e-5, rtol=0)  # the same rotation, up to sign
    torch.testing.assert_close(quaternion_to_matrix(back), m, atol=1e-5, rtol=0)
    six = torch.cat([m[..., :, 0], m[..., :, 1]], -1) * 3.0  # scale does not matter
    torch.testing.assert_close(rot6d_to_matrix(six), m, atol=1e-5, rtol=0)


def test_rotary_attention_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 24, generator=g), torch.randn(1, 1, 24, generator=g)
    a, b = torch.randn(1, 1, 3, generator=g), torch.randn(1, 1, 3, generator=g)
    shift = torch.tensor([[[0.3, -0.2, 0.7]]])

    def score(pa, pb):
        return (apply_rotary(q, rotary_3d(pa, 24)) * apply_rotary(k, rotary_3d(pb, 24))).sum()

    torch.testing.assert_close(score(a, b), score(a + shift, b + shift), atol=1e-5, rtol=0)
    assert (score(a, b) - score(a, b + shift)).abs() > 1e-3
