"""The model benchmark writes JSON and Markdown with the figures the issue asks for (tiny sizes here;
the real figures come from `python -m openhelix_training.bench`, never from timed tests)."""

import json

from openhelix_training.bench import run_model_bench


def test_bench_writes_json_and_markdown(tmp_path):
    result = run_model_bench(tmp_path, system1_configs=("tiny",), system2_configs=("tiny",), steps=(1, 2),
                             repeats=3, system2_repeats=2, include_gpu=False, diffuser_actor_preset="tiny-3dda",
                             diffuser_actor_repeats=1)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["system1"][0]["steps"].keys() == {"1", "2"}
    assert data["system1"][0]["steps"]["1"]["p50_ms"] > 0
    assert data["system2"][0]["config"] == "tiny" and data["system2"][0]["hz_at_p50"] > 0
    assert data["system2"][-2:] == [{"config": "llava-1.5-7b", "skipped": "no GPU"},
                                    {"config": "openhelix-7b", "skipped": "no GPU"}]
    md = (tmp_path / "results.md").read_text()
    assert "| denoising steps | p50 ms | p99 ms | mean ms | CPU-time p50 ms |" in md and "System 2" in md
    assert data["system1"][0]["steps"]["1"]["cpu_p50_ms"] > 0
    assert result["threads"] == 1
    dda_cpu, dda_gpu = data["diffuser_actor"]
    assert dda_cpu["schedules"].keys() == {"ddpm 10", "ddim 5"} and dda_cpu["schedules"]["ddim 5"]["p50_ms"] > 0
    assert dda_gpu == {"config": "tiny-3dda", "device": "cuda", "skipped": "no GPU"}
    assert "| sampler | p50 ms |" in md and "not measured (no GPU)" in md
