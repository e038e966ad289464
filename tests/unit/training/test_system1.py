"""System 1: prediction, determinism, cached scene keys/values, persistence, bad input."""

import numpy as np
import pytest
import torch

from openhelix_training import (
    CameraView,
    CheckpointError,
    Normalization,
    Observation,
    ObservationError,
    System1,
)
from openhelix_training.checkpoint import WEIGHTS_NAME
from openhelix_training.data.calvin import _look_at, _render

PROPRIO = np.array([0.05, -0.02, 0.3, 1, 0, 0, 0, -1, 0, 1], np.float32)


def camera(name, size, eye):
    k = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1.0]])
    ext = _look_at(eye, (0, 0, 0))
    rgb, depth = _render(ext, k, size, (0.05, 0.0), (200, 30, 30))
    return CameraView(rgb, depth, k, ext, name)


@pytest.fixture(scope="module")
def obs():
    return Observation(cameras=[camera("static", 48, (0, -0.9, 0.9)), camera("gripper", 32, (0.05, -0.05, 0.4))])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return System1.from_config("tiny")


def latent(model, seed=0):
    return np.random.default_rng(seed).normal(size=model.config.latent_dim).astype(np.float32)


def test_predict_shapes_and_determinism(tiny, obs):
    traj = tiny.predict(obs, latent(tiny), PROPRIO)
    assert traj.positions.shape == (20, 3) and traj.rotations.shape == (20, 3, 3)
    assert traj.rot6d.shape == (20, 6) and traj.gripper_open.shape == (20,)
    assert np.allclose(np.linalg.det(traj.rotations), 1.0, atol=1e-4)
    np.testing.assert_allclose(traj.positions - PROPRIO[:3], traj.relative_positions, atol=1e-6)
    again = tiny.predict(obs, latent(tiny), PROPRIO)
    assert np.array_equal(traj.positions, again.positions) and np.array_equal(traj.rot6d, again.rot6d)
    other = tiny.predict(obs, latent(tiny), PROPRIO, seed=1)
    assert not np.array_equal(traj.positions, other.positions)
    assert set(np.unique(traj.gripper_command)) <= {-1.0, 1.0}


def test_predict_runs_under_inference_mode(tiny, obs, monkeypatch):
    seen = []
    original = System1.sample

    def spy(self, *args, **kwargs):
        seen.append(torch.is_inference_mode_enabled())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(System1, "sample", spy)
    tiny.predict(obs, latent(tiny), PROPRIO)
    assert seen == [True]


def test_scene_keys_values_computed_once_per_observation(tiny, obs, monkeypatch):
    calls = {"scene": 0, "kv": 0}
    enc = System1.encode_scene
    kv = type(tiny.layers[0].scene_attn).keys_values

    def count_scene(self, *a, **k):
        calls["scene"] += 1
        return enc(self, *a, **k)

    def count_kv(self, *a, **k):
        calls["kv"] += 1
        return kv(self, *a, **k)

    monkeypatch.setattr(System1, "encode_scene", count_scene)
    monkeypatch.setattr(type(tiny.layers[0].scene_attn), "keys_values", count_kv)
    tiny.predict(obs, latent(tiny), PROPRIO, num_inference_steps=5)
    n_layers = tiny.config.num_layers
    assert calls["scene"] == 1
    # per layer: scene and latent K/V once per observation (self-attention projects the waypoints itself)
    assert calls["kv"] == 2 * n_layers


def test_point_cloud_model_accepts_points_and_cameras(obs):
    torch.manual_seed(0)
    model = System1.from_config("tiny", scene_encoder="points")
    xyz, rgb = obs.point_cloud()
    a = model.predict(Observation(points=xyz, colors=(rgb * 255).astype(np.uint8)), latent(model), PROPRIO)
    b = model.predict(obs, latent(model), PROPRIO)
    assert a.positions.shape == b.positions.shape == (20, 3)


def test_bad_inputs_are_named(tiny, obs):
    with pytest.raises(ObservationError, match="per-camera"):
        tiny.predict(Observation(points=np.zeros((10, 3)), colors=np.zeros((10, 3))), latent(tiny), PROPRIO)
    with pytest.raises(ObservationError, match="latent"):
        tiny.predict(obs, np.full(tiny.config.latent_dim, np.nan), PROPRIO)
    with pytest.raises(ObservationError, match="proprio"):
        tiny.predict(obs, latent(tiny), PROPRIO[:7])
    bad = Observation(cameras=[CameraView(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4)), np.eye(3), np.eye(4), "s")])
    with pytest.raises(ObservationError, match="depth"):
        tiny.predict(bad, latent(tiny), PROPRIO)
    with pytest.raises(ObservationError, match="NaN"):
        tiny.predict(Observation(points=np.full((5, 3), np.nan), colors=np.zeros((5, 3))), latent(tiny), PROPRIO)


def test_save_load_round_trip_bit_exact(tmp_path, tiny, obs):
    tiny.set_normalization(Normalization([[-0.2, -0.2, -0.3], [0.2, 0.25, 0.3]], [[-1, -1, -0.2], [1, 1, 1.2]]))
    tiny.save_pretrained(tmp_path / "s1")
    loaded = System1.from_pretrained(tmp_path / "s1")
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.normalization == tiny.normalization
    assert torch.equal(loaded.position_bounds, tiny.position_bounds)
    assert np.array_equal(tiny.predict(obs, latent(tiny), PROPRIO).positions,
                          loaded.predict(obs, latent(tiny), PROPRIO).positions)


def test_mismatch_names_tensors_and_corrupt_file_is_reported(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "s1")
    with pytest.raises(CheckpointError) as err:
        System1.from_pretrained(tmp_path / "s1", embed_dim=60, num_heads=5)
    assert "layers.0.self_attn.qkv.weight: checkpoint (144, 48) vs model (180, 60)" in str(err.value)
    assert "traj_in.weight" in str(err.value) and "different shape" in str(err.value)
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        System1.from_pretrained(tmp_path / "s1", num_layers=3)
    (tmp_path / "s1" / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        System1.from_pretrained(tmp_path / "s1")


def test_training_loss_backpropagates(tiny, obs):
    model = System1.from_config("tiny")
    with torch.no_grad():  # AdaLN-zero starts with closed gates: open them as training would
        model.ada.bias.normal_(0, 0.5)
    t = model.observation_tensors([obs, obs])
    lat = torch.randn(2, model.config.latent_dim, requires_grad=True)
    losses = model(t, lat, torch.tensor(np.stack([PROPRIO] * 2)), torch.zeros(2, 20, 3),
                   torch.tensor([[1, 0, 0, 0, 1, 0]] * 20, dtype=torch.float32).expand(2, 20, 6),
                   torch.ones(2, 20))
    losses["loss"].backward()
    assert lat.grad is not None and lat.grad.abs().sum() > 0
    assert set(losses) == {"loss", "position_l1", "rotation_l1", "gripper_bce"}


def test_package_never_imports_rclpy():
    import subprocess
    import sys

    code = ("import sys, openhelix_training, openhelix_training.train, openhelix_training.bench, "
            "openhelix_training.data.rosbag; print('rclpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_ddim_starts_from_pure_noise(tiny):
    pos, rot = tiny._inference_schedulers(5)
    assert int(pos.timesteps[0]) == tiny.config.num_train_timesteps - 1
    assert pos.timesteps.tolist() == rot.timesteps.tolist() and len(pos.timesteps) == 5


def test_ddim_keeps_its_estimates_within_the_normalised_range(obs):
    """The rotation schedule (squaredcos_cap_v2) ends at alpha_bar ~ 2e-7, so the first DDIM step divides
    the rotation's x0 estimate by ~5e-4: unclipped, it leaves [-1, 1] by orders of magnitude, and since
    the 9 channels share one token per waypoint, the position denoising that follows reads garbage (a
    trained policy then planned 50-60 cm off). Clipping x0 to [-1, 1], as diffusers' DDPM default and
    3D Diffuser Actor do, keeps every sample inside the normalisation bounds."""
    torch.manual_seed(1)
    model = System1.from_config("tiny").eval()
    pos, rot = model._inference_schedulers(5)
    assert pos.config.clip_sample and rot.config.clip_sample and pos.config.clip_sample_range == 1.0
    with torch.no_grad():
        tensors = model.observation_tensors([obs, obs])
        out = model.sample(tensors, torch.randn(2, model.config.latent_dim), torch.randn(2, 10),
                           generator=torch.Generator().manual_seed(0))
    low, high = model.position_bounds
    assert torch.all(out["relative_positions"] >= low - 1e-5) and torch.all(out["relative_positions"] <= high + 1e-5)


def test_world_frame_rotation_targets_and_predictions():
    """rotation_frame 'world': targets are R_cur R_rel (the samples stay relative), and predict() returns
    the model's rotations as they are, where 'relative' composes them with the current one."""
    from scipy.spatial.transform import Rotation

    from openhelix_training.geometry import matrix_to_rot6d

    torch.manual_seed(0)
    world = System1.from_config("tiny", scene_encoder="points", rotation_frame="world")
    relative = System1.from_config("tiny", scene_encoder="points")
    relative.load_state_dict(world.state_dict())
    cur = Rotation.from_euler("xyz", [3.0, 0.2, -0.4]).as_matrix()
    rel = Rotation.from_euler("xyz", [[0.1 * i, 0.0, 0.05 * i] for i in range(world.config.trajectory_length)]).as_matrix()
    proprio = torch.tensor(np.r_[0.1, -0.2, 0.3, matrix_to_rot6d(cur), 1.0], dtype=torch.float32)[None]
    rel6 = torch.tensor(matrix_to_rot6d(rel), dtype=torch.float32)[None]
    pos = torch.zeros(1, world.config.trajectory_length, 3)
    targets = world.trajectory_targets(pos, rel6, proprio)[0, :, 3:].numpy()
    np.testing.assert_allclose(targets, matrix_to_rot6d(cur @ rel), atol=1e-5)
    np.testing.assert_allclose(relative.trajectory_targets(pos, rel6)[0, :, 3:].numpy(), rel6[0].numpy(), atol=1e-6)
    rng = np.random.default_rng(0)
    obs = Observation(points=rng.uniform(-0.5, 0.5, (300, 3)).astype(np.float32),
                      colors=rng.integers(0, 255, (300, 3)).astype(np.uint8))
    lat = latent(world)
    a, b = world.predict(obs, lat, proprio[0].numpy()), relative.predict(obs, lat, proprio[0].numpy())
    np.testing.assert_allclose(b.rotations, np.einsum("ij,njk->nik", cur, a.rotations), atol=1e-4)
    with pytest.raises(ValueError, match="rotation_frame"):
        System1.from_config("tiny", rotation_frame="tool")
