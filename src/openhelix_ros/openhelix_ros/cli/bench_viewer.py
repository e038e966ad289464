"""``openhelix bench viewer``: does watching the graph slow it? The lockstep demo graph (bridge, System 2,
System 1, evaluator: ``openhelix demo``) is run on the same seeded episodes in three arms, interleaved
over ``rounds`` so that drift of the machine falls on every arm alike:

- ``none``: the graph alone;
- ``viewer``: ``openhelix view`` attached (its subscriptions, conversions and scene updates);
- ``viewer+browser``: the viewer and a headless Chromium showing its page (on this machine WebGL runs on
  SwiftShader, on the same CPU as the graph: the worst case of a person watching on the robot computer).

The figure is the environment's step rate while subtasks run: env steps over the wall seconds of all
subtasks (results.json of each run), against the issue's bound of 10 % below the graph alone. The
viewer's and Chromium's CPU seconds are read from /proc. A run whose demo, viewer or browser died is a
failure, never a figure. Writes ``viewer.json`` and ``viewer.md`` under the output folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ARMS = ("none", "viewer", "viewer+browser")
BOUND = 0.10  # a watched graph may lose at most this fraction of its step rate


def _cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) of every live process in process group ``group``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def step_rate(results: dict) -> tuple[int, float]:
    """(env steps, wall seconds) over every subtask of an evaluation's results.json."""
    subtasks = [s for chain in results.get("chains", []) for s in chain.get("subtasks", [])]
    return sum(int(s["steps"]) for s in subtasks), sum(float(s["elapsed"]) for s in subtasks)


def _run_arm(arm: str, name: str, out: Path, chains: int, port: int, log) -> dict:
    """One demo run with ``arm``'s watchers; what it measured."""
    import contextlib

    from openhelix_ros.viewer.browser import watching

    executable = Path(sys.executable).parent / "openhelix"
    runs = out / "runs"
    with contextlib.ExitStack() as stack:
        viewer = None
        cpu = {}
        if arm != "none":
            viewer_log = open(out / "logs" / f"{name}-viewer.log", "w")
            stack.callback(viewer_log.close)
            viewer = subprocess.Popen([str(executable), "view", "--port", str(port)], stdout=viewer_log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            stack.callback(_stop, viewer)
            _wait_for_line(out / "logs" / f"{name}-viewer.log", "serving", viewer, 60.0)
        browser = None
        if arm == "viewer+browser":
            browser = stack.enter_context(watching(f"http://127.0.0.1:{port}/"))
        demo_log = out / "logs" / f"{name}-demo.log"
        started = time.monotonic()
        with open(demo_log, "w") as handle:
            demo = subprocess.run([str(executable), "demo", "--chains", str(chains), "--videos", "0", "--name", name,
                                   "--runs-dir", str(runs)], stdout=handle, stderr=subprocess.STDOUT, timeout=3600)
        seconds = time.monotonic() - started
        problems = []
        if demo.returncode != 0:
            problems.append(f"demo exited {demo.returncode} (log {demo_log})")
        if viewer is not None:
            cpu["viewer"] = round(_cpu_seconds(viewer.pid), 1)
            if viewer.poll() is not None:
                problems.append(f"the viewer died (exit {viewer.returncode})")
        if browser is not None:
            cpu["browser"] = round(_cpu_seconds(browser.pid), 1)
            if browser.poll() is not None:
                problems.append(f"Chromium died (exit {browser.returncode})")
    if problems:
        raise RuntimeError(f"{name}: " + "; ".join(problems))
    results = json.loads((runs / name / "results.json").read_text())
    steps, elapsed = step_rate(results)
    entry = {"arm": arm, "run": name, "steps": steps, "subtask_seconds": round(elapsed, 2),
             "steps_per_s": round(steps / elapsed, 3) if elapsed else 0.0, "run_seconds": round(seconds, 1),
             "average_length": results.get("average_length"), "cpu_seconds": cpu}
    log(f"  {name:28s} {entry['steps_per_s']:6.2f} steps/s ({steps} steps, {elapsed:.0f} s) cpu {cpu}")
    return entry


def _wait_for_line(path: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{path.name}: exited {process.returncode}: {path.read_text()[-600:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{path.name}: no {text!r} within {timeout:g} s")


def _stop(process: subprocess.Popen) -> None:
    from openhelix_ros.common.processes import stop_all

    stop_all([process], grace=15.0)


def run_viewer_bench(out_dir: str | os.PathLike = "runs/bench/viewer", chains: int = 2, rounds: int = 2,
                     log=print) -> dict:
    from openhelix_ros.viewer.browser import find_chromium

    out = Path(out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    # A domain of its own: a graph running beside the bench is neither measured nor disturbed.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randrange(100, 200)))
    arms = ARMS if find_chromium() else ARMS[:2]
    port = 18080 + random.Random().randrange(1000)
    entries = []
    for round_index in range(rounds):
        for arm in arms:
            entries.append(_run_arm(arm, f"r{round_index}-{arm.replace('+', '-')}", out, chains, port, log))
    rates = {}
    for arm in arms:
        steps = sum(e["steps"] for e in entries if e["arm"] == arm)
        seconds = sum(e["subtask_seconds"] for e in entries if e["arm"] == arm)
        rates[arm] = round(steps / seconds, 3) if seconds else 0.0
    base = rates["none"]
    if base <= 0:
        raise RuntimeError("the graph alone ran no subtask steps: no rate to compare against")
    slowdown = {arm: round(1 - rate / base, 4) for arm, rate in rates.items() if arm != "none"}
    result = {"chains": chains, "rounds": rounds, "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]),
              "arms": list(arms), "runs": entries, "steps_per_s": rates, "slowdown": slowdown,
              "bound": BOUND, "cpus": os.cpu_count(),
              # The bound is the viewer's (the issue's); a browser on the same CPU is reported beside it.
              "passed": slowdown["viewer"] <= BOUND,
              "targets": {f"{arm} within {BOUND:.0%}": f"{-value:+.1%} ({'met' if value <= BOUND else 'NOT met'})"
                          for arm, value in slowdown.items()},
              "note": "" if find_chromium() else "no Chromium: the viewer+browser arm was left out"}
    (out / "viewer.json").write_text(json.dumps(result, indent=2))
    (out / "viewer.md").write_text(_markdown(result))
    return result


def _markdown(result: dict) -> str:
    lines = ["# Viewer bench: the lockstep demo graph's step rate, watched and not", "",
             f"{result['rounds']} rounds × {len(result['arms'])} arms, interleaved; each run `openhelix demo "
             f"--chains {result['chains']}` (the same seeded episodes); {result['cpus']} CPUs.", "",
             "| arm | steps/s | change against none |", "|---|---|---|"]
    for arm in result["arms"]:
        change = "" if arm == "none" else f"{-result['slowdown'][arm]:+.1%}"
        lines.append(f"| {arm} | {result['steps_per_s'][arm]:.2f} | {change} |")
    lines += ["", "| run | steps/s | steps | subtask s | viewer CPU s | Chromium CPU s |", "|---|---|---|---|---|---|"]
    for entry in result["runs"]:
        lines.append(f"| {entry['run']} | {entry['steps_per_s']:.2f} | {entry['steps']} | {entry['subtask_seconds']:.0f} | "
                     f"{entry['cpu_seconds'].get('viewer', '')} | {entry['cpu_seconds'].get('browser', '')} |")
    if result["note"]:
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"
