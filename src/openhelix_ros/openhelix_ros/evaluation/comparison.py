"""A comparison of named dual systems (``openhelix compare``) without ROS: which stages each system
still needs, what its evaluation scored, and the report. The verb (cli/compare.py) runs the stages.

State lives in ``<out>/compare.json`` after every stage, so a comparison spans several runs: a stage
that finished is never run again, and a training that stopped resumes from its newest checkpoint.
A system whose graph died or whose evaluation failed gets a failure row with the reason, never a score.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from openhelix_training.configuration_system2 import LatentConfig

STAGES = ("pretrain", "train", "evaluate")
STATE_NAME = "compare.json"
# the settings a comparison is made under; resuming with others would mix two comparisons
SETTINGS = ("systems", "size", "data", "steps", "pretrain_steps", "episodes", "tasks", "seed", "batch_size",
            "episode_length", "protocol", "clock_mode", "pretrained_policy", "system_files")


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a success rate: sound at 0 and n successes, where the
    normal approximation gives an interval of width zero."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class SystemRecord:
    """One system's progress and figures in a comparison."""

    name: str
    stages: dict = field(default_factory=dict)  # stage -> "done" | "failed: <why>"
    pretrained: str = ""  # the pre-trained policy's directory
    checkpoint: str = ""  # the dual training's output directory
    results: str = ""  # the evaluation's results.json
    train_seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # figures read from results.json (see summarize)

    def done(self, stage: str) -> bool:
        return self.stages.get(stage) == "done"

    @property
    def failure(self) -> str:
        return next((text for text in self.stages.values() if text.startswith("failed")), "")


@dataclass
class ComparisonState:
    settings: dict
    systems: dict[str, SystemRecord] = field(default_factory=dict)

    @classmethod
    def load_or_start(cls, out: Path, settings: dict) -> ComparisonState:
        """The state of ``out`` when it holds a comparison under the same settings; a fresh one when it
        holds none. ValueError when it holds one under other settings (resuming would mix them)."""
        path = Path(out) / STATE_NAME
        if not path.is_file():
            return cls(settings=dict(settings), systems={name: SystemRecord(name) for name in settings["systems"]})
        data = json.loads(path.read_text())
        # a setting added since the state was written (absent there) reads as its empty default
        differ = {k: (data["settings"].get(k), settings.get(k)) for k in SETTINGS
                  if data["settings"].get(k) != settings.get(k)
                  and not (data["settings"].get(k) in (None, "") and settings.get(k) in (None, ""))}
        if differ:
            described = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differ.items())
            raise ValueError(f"{path} holds a comparison under other settings ({described}); choose another --out "
                             "or the same settings to resume it")
        systems = {name: SystemRecord(**record) for name, record in data["systems"].items()}
        return cls(settings=data["settings"], systems=systems)

    def save(self, out: Path) -> None:
        path = Path(out) / STATE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": self.settings,
                                   "systems": {n: asdict(r) for n, r in self.systems.items()}}, indent=2))
        tmp.replace(path)


def summarize(results: dict) -> dict:
    """The figures a comparison row shows, from an evaluation's results.json: successes over episodes
    (first subtask of every chain), the Wilson interval, avg. len, and each system's latency and rate."""
    chains = results.get("chains") or []
    episodes = len(chains)
    successes = sum(1 for chain in chains if chain.get("completed", 0) >= 1)
    low, high = wilson_interval(successes, episodes)
    timing = results.get("timing") or {}

    def latency(system: str) -> dict:
        part = timing.get(system) or {}
        inference = part.get("inference_time_s") or {}
        return {"p50_ms": _ms(inference.get("p50")), "p90_ms": _ms(inference.get("p90")),
                "rate_hz": part.get("rate_hz"), "messages": part.get("messages", 0)}

    return {"status": results.get("status"), "episodes": episodes, "successes": successes,
            "success_rate": successes / episodes if episodes else math.nan, "ci95": [low, high],
            "average_length": results.get("average_length"), "per_task": results.get("per_task") or {},
            "system2": latency("system2"), "system1": latency("system1"),
            "latent_age_steps_p50": (timing.get("latent_age_steps") or {}).get("p50"),
            # as the evaluator read the published GoalLatents: "<tokens>x<width>+<coarse actions>" -> count
            "latent_shapes": timing.get("goal_latent_shapes") or {}}


def _ms(seconds) -> float | None:
    return None if seconds is None else round(1000.0 * float(seconds), 1)


def _fmt(value, pattern: str = "{:.1f}") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else pattern.format(value)


def markdown(state: ComparisonState, systems: dict) -> str:
    """The comparison's report: the settings, one row per system, what the budget can and cannot say."""
    s = state.settings
    lines = [f"# Comparison of {len(state.systems)} dual systems", "",
             f"Same data ({s['data']}), same budget ({s['steps']} training steps of the dual system; "
             + (f"the systems that start from a pre-trained policy start from `{s['pretrained_policy']}`"
                if s.get("pretrained_policy") else
                f"{s['pretrain_steps']} steps of policy pre-training for the systems that start from a pre-trained "
                "policy")
             + f"), same seed ({s['seed']}), the same {s['episodes']} seeded evaluation episodes per task "
             f"({', '.join(s['tasks']) or 'CALVIN chains'}), models of size `{s['size']}`, through the graph in "
             f"{s.get('clock_mode', 'lockstep')}.", "",
             "| system | System 2 (mode, latent) | published latent | System 1 | init | Asy(N) | success | 95 % CI | "
             "avg. len | S2 p50 ms | S2 Hz | S1 p50 ms | S1 Hz |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, record in state.systems.items():
        system = systems[name]
        overrides = system.system2.get("overrides") or {}
        s2 = f"{overrides.get('mode', 'prompt_tuning')}, {LatentConfig.from_dict(overrides.get('latent') or {}).describe()}"
        s1o = system.system1.get("overrides") or {}
        s1 = s1o.get("scene_encoder", "points") + (f", {s1o['coarse_actions']} coarse" if s1o.get("coarse_actions")
                                                   else "")
        m = record.summary
        shapes = ", ".join(sorted(m.get("latent_shapes", {}))) or "-"
        head = f"| {name} | {s2} | {shapes} | {s1} | {system.system1_init} | {system.latent_period_steps} |"
        if record.failure:
            lines.append(f"{head} **{record.failure}** | | | | | | |")
            continue
        if not record.done("evaluate"):
            lines.append(f"{head} not evaluated yet | | | | | | |")
            continue
        lines.append(f"{head} {m['successes']}/{m['episodes']} ({100 * m['success_rate']:.0f} %) | "
                     f"{100 * m['ci95'][0]:.0f}-{100 * m['ci95'][1]:.0f} % | {_fmt(m['average_length'], '{:.2f}')} | "
                     f"{_fmt(m['system2']['p50_ms'])} | {_fmt(m['system2']['rate_hz'], '{:.2f}')} | "
                     f"{_fmt(m['system1']['p50_ms'])} | {_fmt(m['system1']['rate_hz'], '{:.2f}')} |")
    evaluated = [r.summary for r in state.systems.values() if r.done("evaluate") and not r.failure]
    lines += ["", "## What this budget can and cannot separate", ""]
    if evaluated:
        widths = [m["ci95"][1] - m["ci95"][0] for m in evaluated]
        lines.append(f"With {evaluated[0]['episodes']} episodes a system, the 95 % intervals are "
                     f"{100 * min(widths):.0f}-{100 * max(widths):.0f} points wide: two systems differ at this budget "
                     "only where their intervals do not overlap.")
        overlapping = _all_overlap([m["ci95"] for m in evaluated])
        lines.append("Every interval overlaps every other: this comparison does not separate the systems."
                     if overlapping else "Some intervals do not overlap: those systems are separated at this budget.")
    lines += ["", "Published latent: the shapes of the GoalLatents System 2 published during the evaluation, as the "
              "evaluator (another process) read them: tokens x width + coarse actions. Latency is each node's own "
              "inference time per message (p50), the rate its messages per second of the run; System 2 runs once "
              "per Asy(N) period in lockstep, so its rate follows N.", ""]
    return "\n".join(lines)


def _all_overlap(intervals: list) -> bool:
    return all(a[0] <= b[1] and b[0] <= a[1] for i, a in enumerate(intervals) for b in intervals[i + 1:])


def plot(state: ComparisonState, path: Path) -> None:
    """Success rates with their 95 % intervals, one bar per evaluated system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, r.summary) for n, r in state.systems.items() if r.done("evaluate") and not r.failure]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(state.systems)), 3.2))
    if rows:
        names = [n for n, _ in rows]
        rates = [100 * m["success_rate"] for _, m in rows]
        low = [100 * (m["success_rate"] - m["ci95"][0]) for _, m in rows]
        high = [100 * (m["ci95"][1] - m["success_rate"]) for _, m in rows]
        ax.bar(names, rates, yerr=[low, high], capsize=4, color="#4c72b0")
    ax.set_ylim(0, 100)
    ax.set_ylabel("success (%), 95 % CI")
    ax.set_title(f"{state.settings['steps']} training steps, {state.settings['episodes']} episodes a task")
    failed = [n for n, r in state.systems.items() if r.failure]
    if failed:
        ax.text(0.99, 0.95, "failed: " + ", ".join(failed), transform=ax.transAxes, ha="right", va="top",
                color="#c44e52", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
