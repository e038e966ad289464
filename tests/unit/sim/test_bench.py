"""The simulator bench writes its JSON and Markdown reports (figures are measured by the bench
command, never asserted against targets in tests)."""

from __future__ import annotations

import json

from openhelix_ros.cli.bench_sim import run_sim_bench


def test_bench_writes_reports(tmp_path):
    results = run_sim_bench(str(tmp_path), steps=15, progress=lambda *_: None)
    assert results["unrendered_steps_per_s"] > 0 and results["rendered_steps_per_s"] > 0
    tiny = results["configurations"]["rendered_tiny"]
    assert tiny["renderer"] == "tiny" and tiny["image_has_content"]
    assert tiny["render_static_200x200_ms"] > 0 and tiny["point_cloud_points"] > 1000
    assert json.loads((tmp_path / "results.json").read_text())["renderer"].startswith("PyBullet TinyRenderer")
    assert "steps/s" in (tmp_path / "report.md").read_text()
