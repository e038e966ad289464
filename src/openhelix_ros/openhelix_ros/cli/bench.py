"""``openhelix bench``: the speed targets of shared/DESIGN.md, measured, never asserted in tests.

Parts (each writes its own JSON + Markdown under ``<out>/<part>/``; this verb adds a summary):

- ``sim``: the embedded simulator, steps/s with both cameras rendered and without rendering;
- ``models``: System 1 latency per denoising step count, System 2 latency (tiny, embedded; 7B on a GPU);
- ``graph``: end-to-end latency through the real nodes, node overhead over raw rclpy, rates under load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from pathlib import Path

# part -> (module, function); each function takes the output directory and returns a JSON-able dict.
PARTS = {
    "sim": ("openhelix_ros.cli.bench_sim", "run_sim_bench"),
    "models": ("openhelix_training.bench", "run_model_bench"),
    "graph": ("openhelix_ros.cli.bench_graph", "run_graph_bench"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"which parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")


def run(args: argparse.Namespace) -> int:
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        print(f"openhelix bench: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "parts": {}}
    failed = []
    for part in args.parts or list(PARTS):
        module_name, function_name = PARTS[part]
        print(f"[bench] {part} ...", flush=True)
        started = time.monotonic()
        try:
            function = getattr(importlib.import_module(module_name), function_name)
            result = function(str(out / part))
            summary["parts"][part] = {"seconds": round(time.monotonic() - started, 1),
                                      "results": str(out / part), "summary": _headline(part, result)}
        except Exception as error:  # a broken part must not hide the others' figures
            traceback.print_exc()
            summary["parts"][part] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(part)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["# openhelix bench", "", summary["date"], ""]
    for part, entry in summary["parts"].items():
        if "error" in entry:
            lines.append(f"- **{part}**: failed: {entry['error']}")
        else:
            lines.append(f"- **{part}** ({entry['seconds']} s, details in `{entry['results']}`): "
                         f"{entry['summary']}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


def _headline(part: str, result: dict) -> str:
    """One line per part for the summary; the part's own report has the tables."""
    if part == "sim":
        return (f"{result['rendered_steps_per_s']:.1f} steps/s rendered, "
                f"{result['unrendered_steps_per_s']:.0f} steps/s unrendered")
    if part == "models" and result.get("targets"):
        return "; ".join(f"{name}: {entry['value']:.1f} ({'met' if entry['met'] else 'NOT met'})"
                         for name, entry in result["targets"].items())
    if isinstance(result, dict) and "targets" in result:
        return "; ".join(f"{name}: {entry}" for name, entry in result["targets"].items())
    return "see the part's report"
