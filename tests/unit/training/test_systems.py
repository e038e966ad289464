"""The survey's systems as configuration files (configs/systems/): each names what it reproduces, builds
from tiny presets into a System 2 and a System 1 that fit each other, and trains a step."""

from __future__ import annotations

import pytest

from openhelix_training import System1, System2
from openhelix_training.goal import check_goal_fit
from openhelix_training.systems import SYSTEM_NAMES, available_systems, load_system, systems_dir
from openhelix_training.train import Trainer


def test_there_is_one_file_per_system_of_the_survey_and_each_says_what_it_cannot_reproduce():
    assert available_systems() == sorted(SYSTEM_NAMES)
    for name in SYSTEM_NAMES:
        text = (systems_dir() / f"{name}.yaml").read_text()
        header = [line for line in text.splitlines() if line.startswith("#")]
        assert any("Table 1" in line for line in header), f"{name}: the header does not cite the paper's Table 1"
        assert any(line.startswith("# Reproduced here") for line in header), name
        assert any(line.startswith("# Not reproduced") for line in header), name
        assert load_system(name).name == name


@pytest.mark.parametrize("name", SYSTEM_NAMES)
def test_each_system_builds_from_tiny_presets_and_trains_a_step(name, tmp_path, small_calvin_dir):
    system = load_system(name).sized("tiny")
    s2 = System2.from_config(system.system2["preset"], **system.system2.get("overrides", {}))
    s1 = System1.from_config(system.system1["preset"], **system.system1.get("overrides", {}))
    check_goal_fit(s2.config, s1.config)
    data = {"kind": "calvin", "path": str(small_calvin_dir)}
    pretrained = None
    if system.system1_init == "pretrained":
        Trainer(system.pretrain_config(tmp_path / "pre", data, 1, training={"batch_size": 4, "progress": False})).run()
        pretrained = str(tmp_path / "pre")
    config = system.train_config(tmp_path / "run", data, 3, training={"batch_size": 4, "progress": False},
                                 pretrained=pretrained)
    assert config.training.stage1_steps + config.training.stage2_steps == 3
    assert config.data.latent_delay == system.latent_delay
    result = Trainer(config).run()
    assert result["steps"] == 3


def test_a_pretrained_system_needs_its_policy_and_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="starts from a pre-trained policy"):
        load_system("openhelix").train_config(tmp_path, {"kind": "synthetic"}, 10)
    with pytest.raises(ValueError, match="unknown system 'openvla'"):
        load_system("openvla")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsystem2: {preset: tiny}\nsystem1: {preset: tiny}\nsystem1_init: later\n")
    with pytest.raises(ValueError, match="system1_init must be one of"):
        load_system(bad)
    bad.write_text("name: bad\nsystem2: {preset: tiny}\nsystem1: {preset: tiny}\nspeed: 3\n")
    with pytest.raises(ValueError, match=r"unknown keys \['speed'\]"):
        load_system(bad)
    with pytest.raises(ValueError, match="size must be one of"):
        load_system("hirt").sized("huge")


def test_each_system_sets_its_schedule_in_the_graph():
    robodual, helix, hirt = load_system("robodual"), load_system("helix"), load_system("hirt")
    assert robodual.latent_period_steps == 8 and helix.latent_period_steps == 4
    assert robodual.node_overrides("lockstep") == {
        "system2": {}, "system1": {"temporal_ensemble_plans": 8, "temporal_ensemble_decay": 0.1}}
    # realtime: Helix's published rates; another system's Asy(N) as the same period of wall time
    assert helix.node_overrides("realtime") == {"system2": {"rate": 8.0}, "system1": {"replan_rate": 200.0}}
    assert hirt.node_overrides("realtime") == {"system2": {"rate": 3.0}, "system1": {}}
    with pytest.raises(ValueError, match="clock_mode must be"):
        hirt.node_overrides("simulated")
