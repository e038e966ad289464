"""TrainConfig: YAML and dotted overrides become typed dataclasses; unknown keys and wrong types are
errors that name the key or field."""

from pathlib import Path

import pytest
import yaml

from openhelix_training.train import main
from openhelix_training.train_config import TrainConfig, TrainConfigError, load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "src" / "openhelix_training" / "openhelix_training"
                  / "configs").glob("*.yaml"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides_are_typed():
    cfg = load_train_config(None, ["training.stage2_steps=5", "training.policy_lr=1e-3", "data.path=[a, b]",
                                   "system2.overrides.mode=frozen", "training.num_threads=1"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.training.stage2_steps == 5 and cfg.training.stage1_steps == 20
    # PyYAML reads 1e-3 (no dot) as a string; it is the number it spells
    assert cfg.training.policy_lr == pytest.approx(1e-3) and isinstance(cfg.training.policy_lr, float)
    assert cfg.data.path == ["a", "b"] and cfg.system2.overrides == {"mode": "frozen"}
    assert cfg.data.synthetic.frames_per_window == 16
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_an_unknown_key_names_it_and_the_allowed_ones(tmp_path):
    with pytest.raises(TrainConfigError) as err:
        load_train_config(write(tmp_path, "training: {stage_one: 3}\n"))
    assert "'training.stage_one'" in str(err.value)
    assert "stage1_steps" in str(err.value) and "keep_checkpoints" in str(err.value)
    with pytest.raises(TrainConfigError, match="unknown config key 'outputs'.*at the top level: output_dir, seed"):
        load_train_config(None, ["outputs=runs/x"])
    with pytest.raises(TrainConfigError, match="'data.synthetic.frames'.*num_windows"):
        load_train_config(None, ["data.synthetic.frames=3"])


@pytest.mark.parametrize(("override", "message"), [
    ("training.stage2_steps=many", "training.stage2_steps must be an integer, got str 'many'"),
    ("training.batch_size=2.5", "training.batch_size must be an integer"),
    ("training.aux_loss=1", "training.aux_loss must be true or false, got int 1"),
    ("training.policy_lr=fast", "training.policy_lr must be a number"),
    ("training.aux_stages=2", "training.aux_stages must be a list of integers"),
    ("training.aux_stages=[2, x]", r"training.aux_stages\[1\] must be an integer"),
    ("data.path=3", "data.path must be a string or a list of strings or null, got int 3"),
    ("system1.overrides=3", "system1.overrides must be a mapping"),
    ("seed=null", "seed must be an integer"),
    ("data=null", "data must be a mapping"),
    ("training.mixed_precision=fp8", "training.mixed_precision must be one of 'no', 'bf16', 'fp16'"),
    ("data.kind=lerobot", "data.kind must be one of 'synthetic', 'calvin', 'rosbag'"),
])
def test_a_wrong_type_names_the_field(override, message):
    with pytest.raises(TrainConfigError, match=message):
        load_train_config(None, [override])


def test_malformed_overrides_are_named():
    with pytest.raises(TrainConfigError, match="expected KEY=VALUE"):
        load_train_config(None, ["training.stage2_steps"])
    with pytest.raises(TrainConfigError, match="seed is a value, not a section"):
        load_train_config(None, ["seed=3", "seed.value=4"])
    with pytest.raises(TrainConfigError, match="seed must be an integer, got dict"):
        load_train_config(None, ["seed.value=4"])


def test_a_file_that_is_no_mapping_is_refused(tmp_path):
    with pytest.raises(TrainConfigError, match="mapping of sections"):
        load_train_config(write(tmp_path, "- 1\n- 2\n"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_packaged_config_reads(path):
    cfg = load_train_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg.output_dir == raw["output_dir"]
    assert cfg.training.stage2_steps == int(raw["training"]["stage2_steps"])


def test_the_cli_reports_a_wrong_type(tmp_path, capsys):
    assert main(["--config", str(write(tmp_path, "training: {batch_size: eight}\n"))]) == 2
    err = capsys.readouterr().err
    assert "bad config" in err and "training.batch_size must be an integer" in err
