"""Measure the scripted expert per task over seeded valid start states and write a report.

    python -m openhelix_ros.sim.expert_report --seeds 20            # all 34 tasks, static blocks
    python -m openhelix_ros.sim.expert_report --seeds 20 --dynamic all   # CALVIN-D tasks, 4 motions
    python -m openhelix_ros.sim.expert_report --backend calvin --seeds 10 --chains 100  # real calvin_env

Start states: for tasks CALVIN can ask for from its initial states, a random valid initial condition
allowing the task; ``lift_*_drawer``: the block in the open drawer; ``unstack_block``: one table block
put on top of another; ``place_in_*`` and ``stack_block`` start with a block in the gripper, which the
expert itself lifts from the table first (a failed set-up is counted as a failure of the task and
reported separately). Each trial has 360 env steps; success is the oracle's verdict at any step.
On calvin (installed by hand) the start states are CALVIN's own, which depend on the condition alone:
each task's trials take distinct conditions; a block in the drawer or a stack is set up from one by
hand, as on the play table. The oracle there is CALVIN's own.
Writes ``<out>/results.json`` and ``<out>/report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from openhelix_ros.sim.backends import BACKENDS, start_state
from openhelix_ros.sim.config import DYNAMIC_MODES
from openhelix_ros.sim.dynamic import DYNAMIC_TASKS
from openhelix_ros.sim.expert import ScriptedExpert
from openhelix_ros.sim.protocol import (
    EPISODE_LENGTH,
    conditions_for_task,
    initial_conditions,
)
from openhelix_ros.sim.tasks import TASKS

HELD_START_TASKS = ("place_in_slider", "place_in_drawer", "stack_block")


class SetupFailed(RuntimeError):
    pass


def _choose(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _run_until(env, expert: ScriptedExpert, task: str, obs: dict, steps: int) -> tuple[bool, int, dict]:
    start_info = env.get_info()
    env.begin_subtask(task)
    expert.reset()
    for step in range(1, steps + 1):
        obs, _, _, info = env.step(expert.act(obs, task))
        if env.tasks.get_task_info_for_set(start_info, info, {task}):
            return True, step, obs
    return False, steps, obs


class _StartStates:
    """Which symbolic start condition a trial begins from: seeded draws on the embedded play table
    (its placements are random too); on calvin, whose start states depend on the condition alone,
    distinct conditions in a seeded order, so that N trials are N different CALVIN start states."""

    def __init__(self, backend: str):
        self.backend = backend

    def choose(self, rng: np.random.Generator, conditions: list, seed: int) -> dict:
        if self.backend == "embedded":
            return _choose(rng, conditions)
        order = np.random.default_rng(len(conditions)).permutation(len(conditions))
        return conditions[int(order[seed % len(conditions)])]

    def state(self, condition: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return start_state(self.backend, condition, rng)


def prepare_start(env, task: str, seed: int, expert: ScriptedExpert) -> dict:
    """Reset ``env`` to a seeded valid start state for ``task`` and return the observation."""
    rng = np.random.default_rng([seed, TASKS.index(task)])
    starts = _StartStates(getattr(env, "backend", "embedded"))
    geometry = expert.g
    colour = next((c for c in ("red", "blue", "pink") if f"_{c}_" in task), None)
    if task.startswith("lift_") and task.endswith("_drawer"):
        key = f"{colour}_block"
        base = starts.choose(rng, [s for s in initial_conditions() if s[key] == "table"], seed)
        if starts.backend == "embedded":
            return env.reset_to_condition({**base, key: "drawer", "drawer": "open"}, seed=int(rng.integers(2**31)))
        # CALVIN's start states never hold a block in the drawer: put it there, 7 cm behind the open
        # tray's front face.
        robot_obs, scene_obs = starts.state({**base, "drawer": "open"}, rng)
        index = geometry.block_names.index(f"block_{colour}")
        size = geometry.block_size(f"block_{colour}")
        scene_obs[6 + 6 * index:12 + 6 * index] = [
            geometry.drawer_slot_x + rng.uniform(-0.03, 0.03), geometry.drawer_front_y - scene_obs[1] + 0.07,
            geometry.drawer_bottom + size[2] / 2 + 0.002, 0.0, 0.0, np.pi / 2 + rng.uniform(-0.4, 0.4)]
        obs = env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
        return _settle(env, obs)
    if task == "unstack_block":
        base = starts.choose(rng, [s for s in initial_conditions() if list(s.values()).count("table") == 2], seed)
        robot_obs, scene_obs = starts.state(base, rng)
        names = geometry.block_names
        on_table = [i for i, n in enumerate(names) if base[n.replace("block_", "") + "_block"] == "table"]
        top, bottom = (on_table if rng.random() < 0.5 else on_table[::-1])
        top_name, bottom_name = names[top], names[bottom]
        bottom_pose = scene_obs[6 + 6 * bottom:12 + 6 * bottom]
        scene_obs[6 + 6 * top:12 + 6 * top] = [
            bottom_pose[0], bottom_pose[1],
            geometry.table_top + geometry.block_size(bottom_name)[2] + geometry.block_size(top_name)[2] / 2 + 0.001,
            0.0, 0.0, bottom_pose[5] + rng.uniform(-0.3, 0.3)]
        obs = env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
        return _settle(env, obs)
    if task in HELD_START_TASKS:
        conditions = [s for s in initial_conditions() if list(s.values()).count("table") >= (2 if task == "stack_block" else 1)]
        if task == "place_in_drawer":
            conditions = [s for s in conditions if s["drawer"] == "open"]
        base = starts.choose(rng, conditions, seed)
        obs = env.reset_to_condition(base, seed=int(rng.integers(2**31)))
        colours = [c for c in ("red", "blue", "pink") if base[f"{c}_block"] == "table"]
        held = colours[int(rng.integers(len(colours)))]
        lifted, _, obs = _run_until(env, expert, f"lift_{held}_block_table", obs, EPISODE_LENGTH)
        if not lifted:
            raise SetupFailed(f"could not lift the {held} block to start {task}")
        return obs
    conditions = conditions_for_task(task)
    return env.reset_to_condition(starts.choose(rng, conditions, seed), seed=int(rng.integers(2**31)))


def _settle(env, obs: dict, steps: int = 5) -> dict:
    """A few steps holding still (open), for blocks placed by hand to come to rest."""
    for _ in range(steps):
        obs, *_ = env.step((obs["robot_obs"][:3], obs["robot_obs"][3:6], 1.0))
    return obs


def measure(tasks, seeds: int, dynamic: str | None = None, progress=None, backend: str = "embedded") -> dict:
    from openhelix_ros.sim import make_env

    env = make_env(backend, render=False, dynamic=dynamic)
    expert = ScriptedExpert(env)
    rows = {}
    for task in tasks:
        successes, steps, setup_failures = 0, [], 0
        for seed in range(seeds):
            try:
                obs = prepare_start(env, task, seed, expert)
            except SetupFailed:
                setup_failures += 1
                continue
            ok, used, _ = _run_until(env, expert, task, obs, EPISODE_LENGTH)
            successes += ok
            if ok:
                steps.append(used)
        rows[task] = {"trials": seeds, "successes": successes, "success_rate": successes / seeds,
                      "setup_failures": setup_failures,
                      "mean_steps": float(np.mean(steps)) if steps else None}
        if progress:
            progress(task, rows[task])
    env.close()
    return rows


def _markdown(results: dict) -> str:
    lines = ["# Scripted expert: success per task", "",
             f"Seeds per task: {results['seeds']}; {EPISODE_LENGTH} env steps per trial; "
             f"{results.get('backend', 'embedded')} simulator, no rendering. Measured {results['date']} on {results['machine']} in "
             f"{results['seconds']:.0f} s.", ""]
    for label, rows in results["tables"].items():
        rates = [r["success_rate"] for r in rows.values()]
        lines += [f"## {label}", "", f"Mean success {np.mean(rates):.3f}; lowest {min(rates):.2f}.", "",
                  "| task | success | rate | mean steps | set-up failures |", "|---|---|---|---|---|"]
        for task, r in rows.items():
            mean = f"{r['mean_steps']:.0f}" if r["mean_steps"] is not None else "-"
            lines.append(f"| {task} | {r['successes']}/{r['trials']} | {r['success_rate']:.2f} | {mean} | "
                         f"{r['setup_failures']} |")
        lines.append("")
    for label, entry in results.get("protocol", {}).items():
        rates = " / ".join(f"{r:.2f}" for r in entry["success_rates"])
        lines += [f"## CALVIN protocol with the expert, {label}", "",
                  f"{entry['num_chains']} chains from `sample_chains(n, seed=0)`, 360 steps per subtask, a chain "
                  f"stops at its first failure: average length **{entry['average_length']:.2f}** / 5; "
                  f"success rates for 1..5 in a row: {rates}.",
                  f"Subtasks that ended a chain: {', '.join(entry['failures']) or 'none'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="start states per task (default 20)")
    parser.add_argument("--tasks", default="all", help="comma-separated task names, or 'all'")
    parser.add_argument("--dynamic", default="none",
                        help="'none' (static), one of left/forward/diagonal/circle, or 'all' (each of the four,"
                             " on the CALVIN-D tasks)")
    parser.add_argument("--chains", type=int, default=0,
                        help="also run CALVIN's protocol with the expert on this many sampled chains")
    parser.add_argument("--backend", default="embedded", choices=BACKENDS,
                        help="embedded play table, or the real calvin_env (installed by you; CALVIN's own start "
                             "states, distinct conditions per task)")
    parser.add_argument("--out", default=os.path.join("runs", "expert"), help="output folder")
    args = parser.parse_args(argv)
    tasks = list(TASKS) if args.tasks == "all" else [t.strip() for t in args.tasks.split(",") if t.strip()]
    from openhelix_ros.sim.tasks import check_task_names

    check_task_names(tasks)
    modes = [None] if args.dynamic == "none" else list(DYNAMIC_MODES) if args.dynamic == "all" else [args.dynamic]
    started = time.time()
    tables = {}
    for mode in modes:
        label = "static (CALVIN)" if mode is None else f"CALVIN-D, blocks moving {mode}"
        mode_tasks = tasks if mode is None else [t for t in tasks if t in DYNAMIC_TASKS]
        print(f"{label}: {len(mode_tasks)} tasks x {args.seeds} seeds", flush=True)
        tables[label] = measure(mode_tasks, args.seeds, mode, backend=args.backend, progress=lambda t, r: print(
            f"  {t:28s} {r['successes']:3d}/{r['trials']}  steps {r['mean_steps'] or 0:.0f}", flush=True))
    protocol = {}
    if args.chains > 0:
        from openhelix_ros.sim import make_env, sample_chains
        from openhelix_ros.sim.expert import expert_policy
        from openhelix_ros.sim.protocol import evaluate_chains

        for mode in modes:
            label = "static (CALVIN)" if mode is None else f"CALVIN-D, blocks moving {mode}"
            env = make_env(args.backend, render=False, dynamic=mode)
            summary = evaluate_chains(env, expert_policy(env), sample_chains(args.chains, seed=0))
            env.close()
            protocol[label] = {"num_chains": args.chains, "average_length": summary.average_length,
                               "success_rates": summary.success_rates,
                               "failures": sorted({c.tasks[c.completed] for c in summary.chains if c.completed < 5})}
            print(f"{label}: protocol over {args.chains} chains, average length {summary.average_length:.2f}",
                  flush=True)
    results = {"seeds": args.seeds, "backend": args.backend, "tables": tables, "protocol": protocol, "seconds": time.time() - started,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(args.out, "report.md"), "w") as handle:
        handle.write(_markdown(results))
    print(f"wrote {args.out}/results.json and {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
