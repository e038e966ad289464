"""The graph bench end to end with the tiny models and short runs: it drives the real system1/system2
processes and writes its JSON and Markdown (the figures themselves are for `openhelix bench`, not
asserted here beyond being measured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow  # four processes importing torch at once: about 90 s on the shared 2-core machine
def test_graph_bench_measures_latency_rates_and_cloud_overhead(tmp_path):
    result = subprocess.run([sys.executable, "-m", "openhelix_ros.cli.bench_graph", "--tiny", "--duration", "3",
                             "--count", "45", "--points", "5000", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    cloud, graph = data["cloud_path"], data["graph"]
    assert cloud["raw_rclpy"]["n"] > 20 and cloud["system1_node"]["n"] > 20
    assert cloud["overhead_ratio_p50"] > 0
    assert graph["end_to_end_image_to_trajectory"]["n"] > 0
    assert graph["end_to_end_image_to_trajectory"]["p50_ms"] > 0 and graph["image_to_latent"]["p50_ms"] > 0
    assert graph["system1_rate_hz"] > 0 and graph["system2_rate_hz"] > 0
    assert graph["system1_model"] == graph["system2_model"] == "tiny"
    report = (tmp_path / "report.md").read_text()
    assert "Overhead (p50 ratio)" in report and "end to end" in report
