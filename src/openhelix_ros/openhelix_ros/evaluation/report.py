"""Results of an evaluation run on disk: ``results.json`` for machines, ``report.md`` + PNG plots for people.

ROS-free. ``build_results`` turns a finished (or cancelled) ``EvaluationRun`` and its
``TimingCollector`` into one JSON-ready dict; ``write_report`` writes that dict and everything derived
from it into ``runs/<name>/``. Plots are drawn from the dict alone (matplotlib, Agg backend), so a
report can be redrawn later from ``results.json`` with ``write_report(load_results(path), directory)``.

``results.json`` (schema_version 1), top-level keys:

- ``run_name``, ``status`` ("completed" / "cancelled" / "failed"), ``incomplete``, ``failure``, ``message``, ``variant``, ``seed``, ``config``
  (the goal after normalisation, clock mode, CALVIN-D mode, the evaluator's parameters), ``started`` /
  ``finished`` (UTC), ``elapsed_s``, ``num_sequences_requested``, ``num_sequences_done``;
- ``success_rates`` (5 fractions: at least k subtasks completed in a row) and ``average_length``, over
  the finished chains only (``sim.EvaluationSummary``); both null for a failed run (no score);
- ``per_position`` (reached / completed / conditional rate per chain position), ``per_task`` (attempts,
  successes, rate, mean steps to success), ``failures`` (why chains stopped, counted);
- ``chains``: index, symbolic initial state, tasks, completed, failure, and per attempted subtask its
  task, instruction, success, env steps, wall seconds and failure; ``interrupted_chain`` (cut by a
  cancel, not counted) or null;
- ``timing``: latent age in seconds and env steps (count/mean/p50/p90/p99/min/max), System 1 and System 2
  message counts, rates (Hz) and inference times, thinned raw samples for the plots, and how many
  trajectories could not be measured;
- ``versions`` (Python and key packages), ``git_revision`` (commit, "+dirty" with local changes).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from openhelix_ros.evaluation.core import (
    EvaluationRun,
    TimingCollector,
    per_position_stats,
    per_task_stats,
)

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
VIDEO_DIR = "videos"  # chain_NNN.mp4 of the filmed chains (evaluation/video.py)
PLOTS = {
    "success_by_position": "success_by_position.png",
    "per_task_success": "per_task_success.png",
    "latent_age": "latent_age.png",
    "system_timing": "system_timing.png",
}
SCHEMA_VERSION = 1
_DISTRIBUTIONS = ("ros-rclpy", "numpy", "matplotlib", "pybullet", "torch")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    try:
        found["openhelix_ros"] = importlib.metadata.version("openhelix_ros")
    except importlib.metadata.PackageNotFoundError:
        found["openhelix_ros"] = None
    return found


def git_revision(directory: Path | str | None = None) -> str | None:
    """The commit checked out at ``directory`` (default: this source tree), "+dirty" when it has
    uncommitted changes; None outside a git checkout."""
    where = str(directory or Path(__file__).resolve().parent)
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{revision}+dirty" if dirty else revision


def build_results(run: EvaluationRun, timing: TimingCollector, *, run_name: str, started: float,
                  finished: float | None = None, status: str | None = None, message: str = "",
                  parameters: dict[str, Any] | None = None) -> dict:
    """Everything about a run as one JSON-ready dict. ``started``/``finished`` are wall-clock epoch
    seconds; ``parameters`` are the evaluator node's own settings (bridge name, timeouts...)."""
    finished = time.time() if finished is None else finished
    summary = run.summary()
    config = run.config
    failed = (status or run.status) == "failed"
    return {
        "schema_version": SCHEMA_VERSION,
        "run_name": run_name,
        "status": status or run.status or "running",
        "message": message,
        "variant": config.variant,
        "seed": int(config.seed),
        "protocol": config.protocol,
        # What one subtask may use, in the protocol's unit: the figure a paper's table must match.
        "budget": {"per_subtask": int(config.episode_length), "unit": config.budget_unit},
        "config": {"num_sequences": int(config.num_sequences), "variant": config.variant,
                   "episode_length": int(config.episode_length), "seed": int(config.seed),
                   "protocol": config.protocol,
                   "clock_mode": config.clock_mode, "dynamic": config.dynamic, "backend": config.backend,
                   "stall_timeout": float(config.stall_timeout), **(parameters or {})},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "elapsed_s": max(0.0, finished - started),
        "num_sequences_requested": int(config.num_sequences),
        "num_sequences_done": len(run.records),
        # Not every requested chain ran (a cancel, or a failure); a failed run has no score at all.
        "incomplete": (status or run.status) != "completed",
        "failure": run.failure,
        "success_rates": None if failed else [float(r) for r in summary.success_rates],
        "average_length": None if failed else float(summary.average_length),
        "per_position": per_position_stats(run.records),
        "per_task": per_task_stats(run.records),
        "failures": dict(Counter(_failure_kind(r.failure) for r in run.records if r.failure).most_common()),
        "chains": [r.to_dict() for r in run.records],
        "interrupted_chain": run.interrupted.to_dict() if run.interrupted else None,
        "timing": timing.to_dict(),
        "versions": versions(),
        "git_revision": git_revision(),
    }


PROTOCOL_TITLES = {
    "calvin": "CALVIN protocol",
    "release": "The released OpenHelix / 3D Diffuser Actor evaluation loop (policy calls of up to 20 open-loop "
               "waypoints, the oracle after every env step)",
}


def _failure_kind(reason: str) -> str:
    """Group failure reasons for the summary: 'subtask 3 (open_drawer): not completed...' -> 'not completed...'."""
    return reason.split(": ", 1)[1] if reason.startswith("subtask ") and ": " in reason else reason


def load_results(path: Path | str) -> dict:
    path = Path(path)
    return json.loads((path / RESULTS_FILE if path.is_dir() else path).read_text())


def write_report(results: dict, directory: Path | str) -> dict[str, Path]:
    """Write results.json, report.md and the plots into ``directory`` (created); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"results": directory / RESULTS_FILE, "report": directory / REPORT_FILE}
    # Write to a temporary name, then rename: a reader never sees half a file, even on a cancel.
    _write_atomic(paths["results"], json.dumps(results, indent=2, allow_nan=False) + "\n")
    for key, name in PLOTS.items():
        paths[key] = directory / name
    _plot_all(results, paths)
    _write_atomic(paths["report"], markdown_report(results))
    return paths


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


# ---------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------

def _fmt(value, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def rates_table(success_rates, average_length: float, num_done: int | None = None) -> str:
    """The CALVIN results row as a Markdown table (also what ``openhelix eval`` prints)."""
    header = "| chains | 1/5 | 2/5 | 3/5 | 4/5 | 5/5 | avg. len |\n|---|---|---|---|---|---|---|\n"
    cells = " | ".join(f"{100 * float(r):.1f}%" for r in success_rates)
    return header + f"| {'-' if num_done is None else num_done} | {cells} | {float(average_length):.2f} |\n"


def _score(results: dict) -> str:
    """The rates table; for a failed run, why there is none."""
    if results["success_rates"] is None:
        return (f"**No score: the run failed** ({results.get('failure') or 'no reason recorded'}). The chains "
                "below ran before it did and are kept for diagnosis; they are not a result.\n")
    table = rates_table(results["success_rates"], results["average_length"], results["num_sequences_done"])
    if results.get("incomplete"):
        table += "\nIncomplete: over the chains that finished before the run was cut short.\n"
    return table


def markdown_report(results: dict) -> str:
    config, timing = results["config"], results["timing"]
    protocol = results.get("protocol", "calvin")  # results written before protocols existed were CALVIN's
    budget = results.get("budget") or {"per_subtask": config["episode_length"], "unit": "env steps"}
    lines = [f"# Evaluation `{results['run_name']}`", "",
             f"{PROTOCOL_TITLES.get(protocol, protocol)} through the ROS graph, variant **{results['variant']}**, "
             f"status **{results['status']}**" + (f" ({results['message']})" if results.get("message") else "") + ".",
             f"Budget: **{budget['per_subtask']} {budget['unit']} per subtask** ({protocol} protocol"
             + (f"; positions clipped to {config['position_clip']}" if config.get("position_clip") else
                "; no position clip" if protocol == "release" else "") + ").",
             f"{results['num_sequences_done']} of {results['num_sequences_requested']} chains, seed {results['seed']}, "
             f"{config['clock_mode']} clock, {results['elapsed_s']:.1f} s "
             f"({results['started']} to {results['finished']}).", "",
             "## Success rate (tasks completed in a row)", "",
             _score(results),
             f"![success by chain position]({PLOTS['success_by_position']})", "",
             "## By chain position", "",
             "| position | reached | completed | completed given reached |", "|---|---|---|---|"]
    for row in results["per_position"]:
        rate = row["conditional_rate"]
        lines.append(f"| {row['position']} | {row['reached']} | {row['completed']} | "
                     f"{'-' if rate is None else f'{100 * rate:.1f}%'} |")
    calls = protocol == "release"  # the release protocol's budget is policy calls: show them too
    lines += ["", "## Per task", "", "| task | attempts | successes | rate | mean steps to success |"
              + (" mean policy calls to success |" if calls else ""), "|---|---|---|---|---|" + ("---|" if calls else "")]
    for task, row in results["per_task"].items():
        lines.append(f"| {task} | {row['attempts']} | {row['successes']} | {100 * row['success_rate']:.1f}% | "
                     f"{_fmt(row['mean_steps_to_success'], 1)} |"
                     + (f" {_fmt(row.get('mean_policy_calls_to_success'), 1)} |" if calls else ""))
    lines += ["", f"![per-task success]({PLOTS['per_task_success']})", "", "## Why chains stopped", ""]
    if results["failures"]:
        lines += ["| reason | chains |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in results["failures"].items()]
    else:
        lines.append("No chain stopped early.")
    age_s, age_steps = timing["latent_age_s"], timing["latent_age_steps"]
    lines += ["", "## Timing", "",
              "Latent age = trajectory stamp - stamp of the observation its goal latent was computed from "
              "(docs/ros_graph.md).", "",
              "| quantity | count | mean | p50 | p90 | max |", "|---|---|---|---|---|---|",
              f"| latent age (s) | {age_s['count']} | {_fmt(age_s['mean'])} | {_fmt(age_s['p50'])} | "
              f"{_fmt(age_s['p90'])} | {_fmt(age_s['max'])} |",
              f"| latent age (env steps at {timing['control_rate']:g} Hz) | {age_steps['count']} | "
              f"{_fmt(age_steps['mean'], 1)} | {_fmt(age_steps['p50'], 1)} | {_fmt(age_steps['p90'], 1)} | "
              f"{_fmt(age_steps['max'], 1)} |"]
    for key, name in (("system2", "System 2"), ("system1", "System 1")):
        stream = timing[key]
        inference = stream["inference_time_s"]
        lines.append(f"| {name} inference (ms), {stream['messages']} msgs at {_fmt(stream['rate_hz'], 2)} Hz | "
                     f"{inference['count']} | {_fmt(_ms(inference['mean']), 1)} | {_fmt(_ms(inference['p50']), 1)} | "
                     f"{_fmt(_ms(inference['p90']), 1)} | {_fmt(_ms(inference['max']), 1)} |")
    if timing["trajectories_without_latent"] or timing["trajectories_with_unseen_latent"]:
        lines += ["", f"Trajectories not measured: {timing['trajectories_without_latent']} without a latent, "
                      f"{timing['trajectories_with_unseen_latent']} naming a latent the evaluator never saw."]
    lines += ["", f"![latent age]({PLOTS['latent_age']})", "", f"![System 1 / System 2]({PLOTS['system_timing']})",
              "", "## Chains", "", "| # | tasks | completed | stopped because |", "|---|---|---|---|"]
    for chain in results["chains"][:200]:
        tasks = ", ".join(f"**{t}**" if i < chain["completed"] else t for i, t in enumerate(chain["tasks"]))
        lines.append(f"| {chain['index']} | {tasks} | {chain['completed']} | {chain['failure'] or '-'} |")
    if len(results["chains"]) > 200:
        lines.append(f"\n({len(results['chains']) - 200} more chains in {RESULTS_FILE}.)")
    if results.get("videos"):
        lines += ["", "## Videos", "", "The static camera, with the plan projected (green open, red closed), the "
                  "instruction, the subtask marks and the latent age burned in.", "",
                  "| chain | video | frames | dropped |", "|---|---|---|---|"]
        for video in results["videos"]:
            link = f"[{video['path']}]({video['path']})" if not video["error"] else f"missing: {video['error']}"
            lines.append(f"| {video['chain']} | {link} | {video['frames']} | {video['dropped']} |")
    if results.get("interrupted_chain"):
        lines += ["", f"Chain {results['interrupted_chain']['index']} was interrupted by the cancel and is not "
                      "counted."]
    lines += ["", "## Set-up", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {f'`{value}`' if value not in ('', None) else '-'} |" for key, value in config.items()]
    lines += [f"| git revision | `{results.get('git_revision')}` |"]
    lines += [f"| {name} | {version or 'not installed'} |" for name, version in results["versions"].items()]
    return "\n".join(lines) + "\n"


def _ms(seconds):
    return None if seconds is None else 1000 * seconds


# ---------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------

def _plot_all(results: dict, paths: dict[str, Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    title = f"{results['run_name']} ({results['variant']}, {results['num_sequences_done']} chains)"

    fig, ax = plt.subplots(figsize=(6, 4))
    if results["success_rates"] is None:
        ax.text(0.5, 0.5, f"no score: the run failed\n{results.get('failure') or ''}", ha="center", va="center",
                wrap=True, transform=ax.transAxes)
        ax.set(title=title, xticks=[], yticks=[])
    else:
        rates = [100 * r for r in results["success_rates"]]
        bars = ax.bar(range(1, 6), rates, color="#3b7dd8")
        ax.bar_label(bars, labels=[f"{r:.1f}%" for r in rates])
        ax.set(xlabel="tasks completed in a row", ylabel="chains (%)", ylim=(0, 105), xticks=range(1, 6),
               title=f"{title}\navg. len {results['average_length']:.2f}")
    _save(fig, paths["success_by_position"])

    per_task = results["per_task"]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(per_task) + 1.2)))
    if per_task:
        names = list(per_task)
        values = [100 * per_task[t]["success_rate"] for t in names]
        bars = ax.barh(names, values, color="#4caf50")
        ax.bar_label(bars, labels=[f"{per_task[t]['successes']}/{per_task[t]['attempts']}" for t in names],
                     fontsize=7, padding=2)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set(xlim=(0, 115), xlabel="success rate (%)")
    else:
        _no_data(ax, "no subtask was attempted")
    ax.set_title(f"per-task success, {title}", fontsize=9)
    _save(fig, paths["per_task_success"])

    timing = results["timing"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ages = [a * timing["control_rate"] for a in timing["latent_age_samples_s"]]
    if ages:
        low, high = math.floor(min(ages)), math.ceil(max(ages))
        # One bar per env step where that is readable (lockstep ages are whole steps), else 60 bars.
        bins = [b - 0.5 for b in range(low, high + 2)] if high - low <= 60 else 60
        ax.hist(ages, bins=bins, color="#ff9800", edgecolor="black", linewidth=0.4)
        period = results["config"].get("latent_period_steps")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.15)  # room for the label above the bars
        if period:  # Asy(N): System 1 uses the previous period's latent, so ages N .. 2N - 1 are expected
            for edge in (period - 0.5, 2 * period - 0.5):
                ax.axvline(edge, color="grey", linestyle="--", linewidth=1)
            ax.text(1.5 * period - 0.5, 0.97, f"Asy({period})", transform=ax.get_xaxis_transform(), ha="center",
                    va="top", color="grey")
        ax.set(xlabel=f"latent age (env steps at {timing['control_rate']:g} Hz)", ylabel="trajectories")
    else:
        _no_data(ax, "no trajectory with a known latent")
    ax.set_title(f"latent age, {title}", fontsize=9)
    _save(fig, paths["latent_age"])

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    names, streams = ("System 2", "System 1"), (timing["system2"], timing["system1"])
    rates = [s["rate_hz"] or 0.0 for s in streams]
    bars = left.bar(names, rates, color=["#9c27b0", "#009688"])
    left.bar_label(bars, labels=[f"{r:.1f} Hz" if s["rate_hz"] else "n/a" for r, s in zip(rates, streams, strict=True)])
    left.set(ylabel="messages per second", title="rate")
    samples = [[1000 * v for v in s["inference_time_samples_s"]] for s in streams]
    if any(samples):
        right.boxplot([s or [float("nan")] for s in samples], tick_labels=list(names), showfliers=False)
        right.set(ylabel="inference time (ms)", title="latency")
        if min(min(s) for s in samples if s) > 0:  # S1 and S2 differ by orders of magnitude
            right.set_yscale("log")
    else:
        _no_data(right, "no latent or trajectory received")
    fig.suptitle(title, fontsize=9)
    _save(fig, paths["system_timing"])


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    temporary = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(temporary, dpi=100)
    plt.close(fig)
    temporary.replace(path)
