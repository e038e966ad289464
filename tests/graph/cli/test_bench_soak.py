"""The soak's one-minute version (the issue's CI run): `openhelix bench soak` over the real realtime sim
graph with the tiny models, instructions changing every few seconds; no node dies, none grows past the
bound, and the report has each node's memory over time, latencies per minute and the drops by reason.
The 30-minute run is `openhelix bench soak` by hand (runs/bench/soak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OPENHELIX = str(Path(sys.executable).with_name("openhelix"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_one_minute_soak_has_no_death_no_growth_past_the_bound_and_a_full_report(tmp_path):
    result = subprocess.run([OPENHELIX, "bench", "soak", "--minutes", "1", "--system1-model", "tiny",
                             "--system2-model", "tiny", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=360, env=dict(os.environ))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    data = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert data["passed"] and not data["deaths"] and not data["grew_past_bound"], data
    assert data["minutes"] >= 0.99 and data["instructions"] >= 10
    assert set(data["rss"]) == {"calvin_bridge", "system2", "system1"}
    assert all(len(samples) >= 10 for samples in data["rss_samples"].values())
    assert all(entry["growth_mib"] is not None for entry in data["rss"].values())
    assert len(data["per_minute"]) == 1  # the watched minute, not the shutdown after it
    minute = data["per_minute"][0]
    assert minute["load"] is not None
    assert minute["system1_plan"]["count"] > 0 and minute["system2_latent"]["count"] > 0
    assert set(data["exit_codes"].values()) == {0}, data["exit_codes"]  # every node stopped cleanly at the end
    report = (tmp_path / "soak" / "soak.md").read_text()
    assert "(passed)" in report and "| system1 |" in report and "Dropped messages" in report
