"""``openhelix bench soak --minutes M``: the realtime sim graph (bridge, System 2, System 1; no viewer) for M
minutes with a new instruction every few seconds, watched from outside like an operator would.

It reports, under ``<out>/`` (soak.json for machines, soak.md for people):

- the RSS of each node over time, sampled every few seconds from /proc, and its growth from the end of
  the warm-up (the first fifth of the run, at most a minute) to the end, against ``RSS_GROWTH_BOUND``;
- per minute, the percentiles of System 1's plan time and of System 2's image-to-latent time (the
  ``inference_time`` each message carries), and the rates of plans and latents;
- the dropped messages by node, topic and reason, read from each node's ``/diagnostics``;
- every node death. A run in which a node died, or one grew past the bound, is a failure: the verb exits
  non-zero and the report says FAILED, never a clean bill.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import numpy as np

RSS_GROWTH_BOUND = 64 * 1024 * 1024  # bytes a node may grow after the warm-up
SAMPLE_PERIOD = 5.0  # s between two RSS samples
NODES = ("calvin_bridge", "system2", "system1")
TASKS = ("open_drawer", "close_drawer", "move_slider_left", "move_slider_right", "turn_on_led", "turn_off_led",
         "lift_red_block_table", "push_blue_block_left")


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (VmRSS in /proc), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    array = np.asarray(values) * 1e3
    return {"count": len(values), "p50_ms": round(float(np.percentile(array, 50)), 2),
            "p95_ms": round(float(np.percentile(array, 95)), 2), "p99_ms": round(float(np.percentile(array, 99)), 2)}


class SoakWatcher:
    """The outside view of the graph: latents, plans and diagnostics as they arrive (thread-safe)."""

    def __init__(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from openhelix_msgs.msg import EETrajectory, GoalLatent
        from openhelix_ros.common import graph
        from openhelix_ros.common.node_utils import DIAGNOSTICS_QOS, LATENT_SUBSCRIBER_QOS, TRAJECTORY_QOS

        self.lock = threading.Lock()
        self.plans: list[tuple[float, float]] = []  # (arrival, inference_time s)
        self.latents: list[tuple[float, float]] = []
        self.drops: dict[str, dict[str, str]] = {}  # node -> "dropped <topic>: <reason>" -> count (newest report)
        node.create_subscription(EETrajectory, graph.EE_TRAJECTORY, self._on_plan, TRAJECTORY_QOS)
        node.create_subscription(GoalLatent, graph.GOAL_LATENT, self._on_latent, LATENT_SUBSCRIBER_QOS)
        node.create_subscription(DiagnosticArray, graph.DIAGNOSTICS, self._on_diagnostics, DIAGNOSTICS_QOS)

    def _on_plan(self, message) -> None:
        with self.lock:
            self.plans.append((time.monotonic(), float(message.inference_time)))

    def _on_latent(self, message) -> None:
        with self.lock:
            self.latents.append((time.monotonic(), float(message.inference_time)))

    def _on_diagnostics(self, message) -> None:
        with self.lock:
            for status in message.status:
                if status.name.endswith(": dropped messages"):
                    self.drops[status.name.split(":")[0]] = {pair.key: pair.value for pair in status.values}


def run_soak_bench(out_dir: str | os.PathLike = "runs/bench/soak", minutes: float = 30.0,
                   instruction_period: float = 5.0, system1_model: str = "default", system2_model: str = "embedded",
                   log=print) -> dict:
    """Run the soak and write its report; the result dict has ``passed``. Raises nothing for a node death:
    that is the soak's finding, reported (the caller exits non-zero on ``passed`` False)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from openhelix_msgs.msg import Instruction
    from openhelix_ros.common import graph
    from openhelix_ros.common.environment import apply_ros_defaults
    from openhelix_ros.common.node_utils import INSTRUCTION_PUBLISHER_QOS
    from openhelix_ros.common.processes import start_graph, stop_all
    from openhelix_ros.sim.language import evaluation_instruction

    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    apply_ros_defaults()
    duration = minutes * 60.0
    warmup = min(60.0, duration / 5)
    processes = start_graph("sim", {"clock_mode": "realtime", "system1_model": system1_model,
                                    "system2_model": system2_model, "backend": "embedded", "rviz": "false"},
                            log_dir=out / "logs")
    pids = {p.label: p.process.pid for p in processes}
    rclpy.init()
    node = rclpy.create_node("soak_watcher")
    watcher = SoakWatcher(node)
    instructions = node.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    rss: dict[str, list[tuple[float, int]]] = {label: [] for label in pids}
    load: list[tuple[float, float]] = []  # (s, 1-minute load average): latencies mean little without it
    deaths: list[dict] = []
    choose = random.Random(0)
    sent = 0
    started = time.monotonic()
    next_instruction = started
    next_sample = started
    try:
        while time.monotonic() - started < duration:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            for process in processes:
                if not process.alive and not any(d["node"] == process.label for d in deaths):
                    deaths.append({"node": process.label, "at_s": round(now - started, 1),
                                   "status": process.returncode, "log_tail": process.log_tail(30)})
                    log(f"[soak] {process.label} died (status {process.returncode}) at {now - started:.0f} s")
            if deaths:
                break
            if now >= next_instruction:
                task = choose.choice(TASKS)
                sent += 1
                instructions.publish(Instruction(text=evaluation_instruction(task), task=task, sequence=sent))
                next_instruction += instruction_period
            if now >= next_sample:
                for label, pid in pids.items():
                    value = rss_bytes(pid)
                    if value is not None:
                        rss[label].append((round(now - started, 1), value))
                load.append((now - started, os.getloadavg()[0]))
                next_sample += SAMPLE_PERIOD
                elapsed = now - started
                if int(elapsed) % 60 < SAMPLE_PERIOD:
                    log(f"[soak] {elapsed / 60:.1f} of {minutes:g} min: {len(watcher.plans)} plans, "
                        f"{len(watcher.latents)} latents, {sent} instructions")
    finally:
        elapsed = time.monotonic() - started
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        codes = stop_all(processes)
    with watcher.lock:
        plans, latents, drops = list(watcher.plans), list(watcher.latents), dict(watcher.drops)
    per_minute = []
    watched = min(elapsed, duration)  # the graph was watched this long; stopping it is not part of the run
    for minute in range(int(np.ceil(watched / 60.0 - 1e-6))):
        low, high = started + 60 * minute, started + 60 * (minute + 1)
        span = min(high, started + watched) - low
        in_plans = [t for at, t in plans if low <= at < high]
        in_latents = [t for at, t in latents if low <= at < high]
        loads = [value for at, value in load if 60 * minute <= at < 60 * (minute + 1)]
        per_minute.append({"minute": minute + 1, "system1_plan": percentiles(in_plans),
                           "system2_latent": percentiles(in_latents),
                           "plans_per_s": round(len(in_plans) / span, 2) if span > 0 else 0.0,
                           "latents_per_s": round(len(in_latents) / span, 2) if span > 0 else 0.0,
                           "load": round(float(np.mean(loads)), 2) if loads else None})
    growth = {}
    for label, samples in rss.items():
        after = [value for at, value in samples if at >= warmup]
        growth[label] = {"first_mib": round(samples[0][1] / 2**20, 1) if samples else None,
                         "after_warmup_mib": round(after[0] / 2**20, 1) if after else None,
                         "last_mib": round(samples[-1][1] / 2**20, 1) if samples else None,
                         "growth_mib": round((after[-1] - after[0]) / 2**20, 1) if len(after) >= 2 else None}
    grew = [label for label, entry in growth.items()
            if entry["growth_mib"] is not None and entry["growth_mib"] * 2**20 > RSS_GROWTH_BOUND]
    passed = not deaths and not grew and bool(plans) and bool(latents)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "minutes": round(elapsed / 60, 2),
              "asked_minutes": minutes, "models": {"system1": system1_model, "system2": system2_model},
              "instruction_period_s": instruction_period, "instructions": sent, "plans": len(plans),
              "latents": len(latents), "warmup_s": warmup, "rss_growth_bound_mib": RSS_GROWTH_BOUND / 2**20,
              "rss": growth, "rss_samples": rss, "grew_past_bound": grew, "per_minute": per_minute,
              "dropped": drops, "deaths": deaths, "exit_codes": dict(zip(pids, codes, strict=True)),
              "passed": passed,
              "targets": {"node deaths": len(deaths), "RSS growth past bound": grew or "none"}}
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    (out / "soak.md").write_text(soak_markdown(result))
    log(soak_markdown(result))
    return result


def _triple(stats: dict) -> str:
    return f"{stats['p50_ms']} / {stats['p95_ms']} / {stats['p99_ms']}" if stats["count"] else "-"


def soak_markdown(result: dict) -> str:
    verdict = "passed" if result["passed"] else "**FAILED**"
    lines = [f"# Soak: {result['minutes']} min of the realtime sim graph ({verdict})", "",
             f"{result['date']}; System 1 `{result['models']['system1']}`, System 2 `{result['models']['system2']}`; "
             f"a new instruction every {result['instruction_period_s']:g} s ({result['instructions']} in all); "
             f"{result['plans']} plans, {result['latents']} latents.", "",
             f"Node deaths: {len(result['deaths'])}. RSS growth after the {result['warmup_s']:g} s warm-up, bound "
             f"{result['rss_growth_bound_mib']:g} MiB: {', '.join(result['grew_past_bound']) or 'none past it'}.", "",
             "| node | RSS first (MiB) | after warm-up | last | growth |", "|---|---|---|---|---|"]
    for label, entry in result["rss"].items():
        lines.append(f"| {label} | {entry['first_mib']} | {entry['after_warmup_mib']} | {entry['last_mib']} | "
                     f"{entry['growth_mib']} |")
    lines += ["", f"The machine's load average is the mean of its 1-minute figure over the minute ({os.cpu_count()} "
              "CPUs here): other work on the machine shows in the latencies.", "",
              "| minute | S1 plan p50 / p95 / p99 (ms) | plans/s | S2 latent p50 / p95 / p99 (ms) | latents/s | load |",
              "|---|---|---|---|---|---|"]
    for row in result["per_minute"]:
        s1, s2 = row["system1_plan"], row["system2_latent"]
        lines.append(f"| {row['minute']} | {_triple(s1)} | {row['plans_per_s']} | {_triple(s2)} | "
                     f"{row['latents_per_s']} | {row.get('load', '-')} |")
    lines += ["", "Dropped messages (each node's last /diagnostics report):", ""]
    if not any(result["dropped"].values()):
        lines.append("- none")
    for node, reasons in sorted(result["dropped"].items()):
        for reason, count in sorted(reasons.items()):
            lines.append(f"- {node}: {reason}: {count}")
    for death in result["deaths"]:
        lines += ["", f"## {death['node']} died at {death['at_s']} s (status {death['status']})", "", "```",
                  death["log_tail"], "```"]
    return "\n".join(lines) + "\n"
