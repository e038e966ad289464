"""`openhelix reproduce --stage vision` end to end with the tiny System 2: scenes, both training stages, the
held-out report, the weights, resuming, and what it refuses."""

from __future__ import annotations

import json

import pytest

from openhelix_ros.cli.main import main
from openhelix_training import modeling_system2

SMALL = ["--system2", "tiny", "--scenes", "12", "--heldout-scenes", "6", "--tower-steps", "3", "--align-steps", "2",
         "--align-batch", "4", "--eval-scenes", "2", "--threads", "1"]


def test_the_vision_stage_runs_resumes_and_ships(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["reproduce", "--out", str(out), *SMALL]) == 0
    state = json.loads((out / "reproduce.json").read_text())
    assert list(state["done"]) == ["vision.scenes", "vision.tower", "vision.align", "vision.evaluate", "vision.export"]
    assert state["done"]["vision.tower"]["steps"] == 3 and state["done"]["vision.align"]["steps"] == 2
    report = json.loads((out / "vision" / "report.json").read_text())
    assert report["scenes"] == 6 and report["asked_scenes"] == 2
    assert {"prior", "tower", "vqa", "caption"} <= set(report)
    assert "| **all** |" in (out / "vision" / "report.md").read_text()
    weights = out / "vision" / "system2-embedded-vision.safetensors"
    provenance = modeling_system2.load_vision_weights(modeling_system2.System2.from_config("tiny").mllm, str(weights))
    assert provenance["settings"]["tower_steps"] == 3 and provenance["heldout"]["vqa"] == report["vqa"]["accuracy"]
    # again: nothing is redone; --ship is only for the embedded preset's weights
    monkeypatch.setattr(modeling_system2, "VISION_WEIGHTS_DIR", tmp_path / "package")
    capsys.readouterr()
    assert main(["reproduce", "--out", str(out), *SMALL, "--ship", "test-v1"]) == 1
    text = capsys.readouterr()
    assert json.loads((out / "reproduce.json").read_text())["done"] == state["done"]
    assert "vision tower" not in text.out and "--ship is for the embedded preset" in text.err
    assert not (tmp_path / "package").exists()


def test_shipping_copies_once_and_never_rewrites_a_name(tmp_path, monkeypatch):
    import argparse

    from openhelix_ros.cli.reproduce import ship_vision_weights

    monkeypatch.setattr(modeling_system2, "VISION_WEIGHTS_DIR", tmp_path / "package")
    weights, report = tmp_path / "w.safetensors", tmp_path / "report.md"
    weights.write_bytes(b"first")
    report.write_text("# report")
    args = argparse.Namespace(system2="embedded", ship="test-v1")
    ship_vision_weights(args, weights, report)
    shipped = modeling_system2.shipped_vision_weights_file("test-v1")
    assert shipped.read_bytes() == b"first" and shipped.with_suffix(".md").read_text() == "# report"
    assert modeling_system2.shipped_vision_weights() == ["test-v1"]
    ship_vision_weights(args, weights, report)  # the same bytes again: nothing to do
    weights.write_bytes(b"second")
    with pytest.raises(ValueError, match="under a new name"):
        ship_vision_weights(args, weights, report)
    with pytest.raises(ValueError, match="lower-case"):
        ship_vision_weights(argparse.Namespace(system2="embedded", ship="../x"), weights, report)
    assert shipped.read_bytes() == b"first"


@pytest.mark.parametrize(("argv", "message"), [
    (["--stage", "policy"], "unknown stage"),
    (["--scenes", "0"], "--scenes must be positive"),
    (["--tower-steps", "0"], "--tower-steps must be positive"),
    (["--align-batch", "40", "--scenes", "12"], "more than --scenes"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, argv, message):
    assert main(["reproduce", "--out", str(tmp_path), *SMALL, *argv]) == 2
    assert message in capsys.readouterr().err


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    (tmp_path / "reproduce.json").write_text(json.dumps({"settings": {"scenes": 5}, "done": {}}))
    assert main(["reproduce", "--out", str(tmp_path), *SMALL]) == 2
    assert "other settings" in capsys.readouterr().err
