"""``openhelix bench``: the speed targets of shared/DESIGN.md, measured, never asserted in tests.

Parts (each writes its own JSON + Markdown under ``<out>/<part>/``; this verb adds a summary):

- ``sim``: the embedded simulator, steps/s with both cameras rendered and without rendering;
- ``models``: System 1 latency per denoising step count, System 2 latency (tiny, embedded; 7B on a GPU);
- ``graph``: end-to-end latency through the real nodes, node overhead over raw rclpy, rates under load;
- ``soak`` (only when named; ``--minutes M``, 30 by default): the realtime graph for M minutes, its nodes'
  memory, latencies per minute, drops and deaths (cli/bench_soak.py). A death or a node growing past the
  bound fails the part.
- ``viewer`` (only when named): the lockstep demo graph's step rate alone, with ``openhelix view`` attached,
  and with a headless browser on the viewer's page (cli/bench_viewer.py), against a 10 % bound.
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
# Parts run only when named (``openhelix bench`` alone leaves them out): they take long.
NAMED_ONLY = {"soak": ("openhelix_ros.cli.bench_soak", "run_soak_bench"),
              "viewer": ("openhelix_ros.cli.bench_viewer", "run_viewer_bench")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"which parts to run: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the soak part runs (default 30)")
    parser.add_argument("--system1-model", default="default", help="System 1 of the soak (default: default)")
    parser.add_argument("--system2-model", default="embedded", help="System 2 of the soak (default: embedded)")


def run(args: argparse.Namespace) -> int:
    known = {**PARTS, **NAMED_ONLY}
    unknown = [part for part in args.parts if part not in known]
    if unknown:
        print(f"openhelix bench: unknown part(s) {', '.join(unknown)}; choose from {', '.join(known)}")
        return 2
    if not args.minutes > 0:
        print(f"openhelix bench: --minutes must be > 0, got {args.minutes:g}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    summary: dict = {"date": date, "parts": _earlier_parts(out / "summary.json")}
    failed = []
    for part in args.parts or list(PARTS):
        module_name, function_name = known[part]
        print(f"[bench] {part} ...", flush=True)
        started = time.monotonic()
        try:
            function = getattr(importlib.import_module(module_name), function_name)
            options = ({"minutes": args.minutes, "system1_model": args.system1_model,
                        "system2_model": args.system2_model} if part == "soak" else {})
            result = function(str(out / part), **options)
            if result.get("passed") is False:
                raise RuntimeError(f"{part} failed: {result.get('targets')} (report in {out / part})")
            summary["parts"][part] = {"date": date, "seconds": round(time.monotonic() - started, 1),
                                      "results": str(out / part), "summary": _headline(part, result)}
        except Exception as error:  # a broken part must not hide the others' figures
            traceback.print_exc()
            summary["parts"][part] = {"date": date, "error": f"{type(error).__name__}: {error}"}
            failed.append(part)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["# openhelix bench", "", summary["date"], ""]
    for part, entry in summary["parts"].items():
        if "error" in entry:
            lines.append(f"- **{part}**: failed: {entry['error']}")
        else:
            lines.append(f"- **{part}** ({entry.get('date', 'undated')}, {entry['seconds']} s, details in "
                         f"`{entry['results']}`): {entry['summary']}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


def _earlier_parts(path: Path) -> dict:
    """The parts of an earlier summary in the same folder: a bench of one part adds to the summary
    instead of dropping the others' figures."""
    try:
        parts = json.loads(path.read_text()).get("parts", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return parts if isinstance(parts, dict) else {}


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
