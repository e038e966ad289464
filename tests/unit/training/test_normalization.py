"""Normalization: one object, saved as normalization.json beside System 1's weights; checkpoints of the
older format (bounds as buffers in the weights and twice in config.json, or only in config.json) still
load, with the outputs they gave."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openhelix_training import CheckpointError, Normalization, Observation, System1
from openhelix_training.checkpoint import (
    CONFIG_NAME,
    NORMALIZATION_NAME,
    WEIGHTS_NAME,
    save_weights_and_config,
)
from openhelix_training.normalization import NormalizationError

COMMITTED = Path(__file__).resolve().parents[3] / "checkpoints" / "easy6" / "system1"
RNG = np.random.default_rng(5)
POINTS = Observation(points=RNG.uniform(-0.4, 0.4, (600, 3)).astype(np.float32),
                     colors=RNG.uniform(0, 1, (600, 3)).astype(np.float32))
PROPRIO = np.array([0.05, -0.02, 0.3, 1, 0, 0, 0, -1, 0, 1], np.float32)
BOUNDS = Normalization([[-0.21, -0.1, -0.3], [0.2, 0.25, 0.33]], [[-1.1, -1, -0.2], [1, 1.3, 1.2]])


def policy():
    torch.manual_seed(0)
    model = System1.from_config("tiny", scene_encoder="points")
    with torch.no_grad():  # open the AdaLN-zero gates, so that the output depends on every weight
        model.ada.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    model.set_normalization(BOUNDS)
    return model


def plan(model, latent_dim=None):
    latent = np.linspace(-1, 1, latent_dim or model.config.latent_dim).astype(np.float32)
    return model.predict(POINTS, latent, PROPRIO).positions


def write_older_format(model, directory, bounds_in_weights=True):
    """What save_pretrained wrote before normalization.json: the bounds as buffers in the weights, in a
    "normalization" block and as System1Config fields in config.json."""
    bounds = model.normalization.to_dict()
    weights = dict(model.state_dict())
    if bounds_in_weights:
        weights.update({name: torch.tensor(value, dtype=torch.float32) for name, value in bounds.items()})
    save_weights_and_config(directory, weights, {"model_type": "openhelix_system1",
                                                 "system1": {**model.config.to_dict(), **bounds},
                                                 "normalization": bounds})


def test_normalization_round_trips_through_dict_and_file(tmp_path):
    assert Normalization.from_dict(BOUNDS.to_dict()) == BOUNDS
    assert json.loads(json.dumps(BOUNDS.to_dict())) == BOUNDS.to_dict()
    assert BOUNDS.save(tmp_path).name == NORMALIZATION_NAME
    assert Normalization.load(tmp_path) == BOUNDS
    # held as float32, what System 1 computes with, so that the file restores the model exactly
    assert BOUNDS.position_bounds[0][0] == float(np.float32(-0.21))
    with pytest.raises(AttributeError):
        BOUNDS.position_bounds = ((0, 0, 0), (1, 1, 1))  # frozen: one object, no silent edits


@pytest.mark.parametrize(("change", "message"), [
    ({"position_bounds": [[0, 0], [1, 1]]}, r"position_bounds must have shape \(2, 3\)"),
    ({"workspace_bounds": [[1, 0, 0], [0, 1, 1]]}, "workspace_bounds: every low must be below its high"),
    ({"position_bounds": [[0, 0, float("nan")], [1, 1, 1]]}, "position_bounds must be finite"),
    ({"position_bounds": "wide"}, "position_bounds must"),
    ({"scale": 2.0}, "unknown: scale"),
])
def test_bad_bounds_are_named(change, message):
    with pytest.raises(NormalizationError, match=message):
        Normalization.from_dict({**BOUNDS.to_dict(), **change})


def test_the_bounds_are_stored_once(tmp_path):
    model = policy()
    model.save_pretrained(tmp_path / "s1")
    meta = json.loads((tmp_path / "s1" / CONFIG_NAME).read_text())
    assert "normalization" not in meta and "position_bounds" not in meta["system1"]
    from safetensors.torch import load_file

    assert not {"position_bounds", "workspace_bounds"} & set(load_file(str(tmp_path / "s1" / WEIGHTS_NAME)))
    assert Normalization.load(tmp_path / "s1") == model.normalization
    assert torch.equal(model.position_bounds, torch.tensor(BOUNDS.position_bounds))


@pytest.mark.parametrize("bounds_in_weights", [True, False], ids=["buffers-and-config", "config-only"])
def test_an_older_checkpoint_loads_with_identical_outputs(tmp_path, bounds_in_weights):
    model = policy()
    expected = plan(model)
    write_older_format(model, tmp_path / "old", bounds_in_weights)
    loaded = System1.from_pretrained(tmp_path / "old")
    assert loaded.normalization == BOUNDS
    assert np.array_equal(plan(loaded), expected)
    # saved again it is a checkpoint of the current format, with the same outputs
    loaded.save_pretrained(tmp_path / "new")
    assert np.array_equal(plan(System1.from_pretrained(tmp_path / "new")), expected)


def test_the_weights_buffers_win_over_config_json_in_an_older_checkpoint(tmp_path):
    """The old loader copied the buffers into the config: they were what the model computed with."""
    model = policy()
    write_older_format(model, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / CONFIG_NAME).read_text())
    meta["normalization"]["position_bounds"] = [[-9, -9, -9], [9, 9, 9]]
    (tmp_path / "old" / CONFIG_NAME).write_text(json.dumps(meta))
    assert System1.from_pretrained(tmp_path / "old").normalization == BOUNDS


def test_a_checkpoint_without_bounds_or_with_a_corrupt_file_is_refused(tmp_path):
    model = policy()
    save_weights_and_config(tmp_path / "none", model.state_dict(),
                            {"model_type": "openhelix_system1", "system1": model.config.to_dict()})
    with pytest.raises(CheckpointError, match="no normalization"):
        System1.from_pretrained(tmp_path / "none")
    model.save_pretrained(tmp_path / "bad")
    (tmp_path / "bad" / NORMALIZATION_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        System1.from_pretrained(tmp_path / "bad")


@pytest.mark.skipif(not (COMMITTED / WEIGHTS_NAME).is_file(), reason="the committed checkpoint is missing")
def test_the_committed_checkpoint_keeps_its_normalization():
    meta = json.loads((COMMITTED / CONFIG_NAME).read_text())
    loaded = System1.from_pretrained(COMMITTED)
    assert loaded.normalization == Normalization.from_dict(meta["normalization"])
    assert loaded.position_bounds.tolist() == meta["normalization"]["position_bounds"]
    assert loaded.workspace_bounds.tolist() == meta["normalization"]["workspace_bounds"]
    assert np.all(np.isfinite(plan(loaded)))


def test_system1_config_names_the_moved_fields():
    with pytest.raises(ValueError, match="no System1Config fields.*Normalization"):
        System1.from_config("tiny", position_bounds=[[-1, -1, -1], [1, 1, 1]])
