"""PretrainedModelMixin: both models are built by from_config and round-trip through save_pretrained /
from_pretrained (config.json + model.safetensors + what each keeps beside its weights)."""

import json

import numpy as np
import pytest
import torch

from openhelix_training import (
    CheckpointError,
    Normalization,
    Observation,
    System1,
    System1Config,
    System2,
    System2Config,
)
from openhelix_training.checkpoint import CONFIG_NAME, NORMALIZATION_NAME, TOKENIZER_DIR, WEIGHTS_NAME
from openhelix_training.pretrained import PretrainedModelMixin

RNG = np.random.default_rng(3)
POINTS = Observation(points=RNG.uniform(-0.4, 0.4, (600, 3)).astype(np.float32),
                     colors=RNG.uniform(0, 1, (600, 3)).astype(np.float32))
PROPRIO = np.array([0.05, -0.02, 0.3, 1, 0, 0, 0, -1, 0, 1], np.float32)


def tiny_model(cls):
    torch.manual_seed(0)
    if cls is System1:
        model = System1.from_config("tiny", scene_encoder="points")
        with torch.no_grad():  # open the AdaLN-zero gates, so that every weight shapes the output
            model.ada.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        model.set_normalization(Normalization([[-0.2, -0.1, -0.3], [0.2, 0.25, 0.3]], [[-1, -1, -0.2], [1, 1, 1.2]]))
        return model
    model = System2.from_config("tiny")
    with torch.no_grad():
        model.act_embedding.add_(0.5)
    return model


def output(model):
    if isinstance(model, System1):
        latent = np.linspace(-1, 1, model.config.latent_dim).astype(np.float32)
        return torch.from_numpy(model.predict(POINTS, latent, PROPRIO).positions)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return model.encode(image, "open the drawer")


@pytest.mark.parametrize("cls", [System1, System2])
def test_both_models_round_trip_through_the_mixin(cls, tmp_path):
    assert issubclass(cls, PretrainedModelMixin)
    model = tiny_model(cls)
    assert model.save_pretrained(tmp_path / "model") == tmp_path / "model"
    meta = json.loads((tmp_path / "model" / CONFIG_NAME).read_text())
    assert meta["model_type"] == cls.model_type
    assert cls.config_class.from_dict(meta[cls.config_key]) == model.config
    assert (tmp_path / "model" / WEIGHTS_NAME).is_file()
    companion = NORMALIZATION_NAME if cls is System1 else TOKENIZER_DIR
    assert (tmp_path / "model" / companion).exists()

    loaded = cls.from_pretrained(tmp_path / "model")
    assert type(loaded) is cls and loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(output(loaded), output(model))
    if cls is System1:
        assert loaded.normalization == model.normalization


@pytest.mark.parametrize("cls", [System1, System2])
def test_from_config_takes_a_preset_a_config_or_a_dict_with_overrides(cls):
    by_name = cls.make_config("tiny", latent_dim=16)
    assert isinstance(by_name, cls.config_class) and by_name.latent_dim == 16
    assert cls.make_config(by_name, latent_dim=24).latent_dim == 24
    assert cls.make_config(by_name.to_dict()) == by_name
    assert cls.make_config(None) == cls.config_class.preset(cls.default_preset)
    with pytest.raises(TypeError, match="preset name"):
        cls.from_config(3)
    with pytest.raises(ValueError, match="unknown"):
        cls.make_config("tiny", no_such_field=1)


def test_defaults_are_the_presets_they_were():
    assert System1.make_config() == System1Config.preset("default")
    assert System2.make_config() == System2Config.preset("tiny")


def test_a_directory_of_the_other_model_is_refused_by_name(tmp_path):
    tiny_model(System2).save_pretrained(tmp_path / "s2")
    with pytest.raises(CheckpointError, match="not a System1 checkpoint.*openhelix_system2"):
        System1.from_pretrained(tmp_path / "s2")
    meta = json.loads((tmp_path / "s2" / CONFIG_NAME).read_text())
    del meta["system2"]
    (tmp_path / "s2" / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no 'system2' block"):
        System2.from_pretrained(tmp_path / "s2")


def test_overrides_change_the_config_before_loading(tmp_path):
    model = tiny_model(System1)
    model.save_pretrained(tmp_path / "s1")
    assert System1.from_pretrained(tmp_path / "s1", num_inference_steps=2).config.num_inference_steps == 2
    with pytest.raises(CheckpointError, match="different shape"):
        System1.from_pretrained(tmp_path / "s1", embed_dim=60, num_heads=5)
