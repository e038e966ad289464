"""Simulator bench: steps per second of the embedded play table with both cameras rendered and with no
rendering, plus where the time of a rendered step goes. Writes ``runs/bench-sim/results.json`` and
``report.md``.

    python -m openhelix_ros.cli.bench_sim [--steps 300] [--out runs/bench-sim] [--egl]

``run_sim_bench(out_dir)`` is the entry ``openhelix bench`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

TARGET_RENDERED_STEPS_PER_S = 20.0


def _timed_steps(env, steps: int, rng: np.random.Generator) -> float:
    """Seconds per env step over ``steps`` steps of small random relative actions."""
    actions = rng.uniform(-0.5, 0.5, size=(steps, 7))
    actions[:, 6] = np.where(rng.random(steps) < 0.5, -1.0, 1.0)
    env.reset(seed=1)
    for action in actions[:5]:  # warm-up: caches, first renders
        env.step(action)
    started = time.perf_counter()
    for action in actions:
        env.step(action)
        if env.get_robot_obs()[2] < 0.05:  # keep the random walk above the desk
            env.reset(seed=1)
    return (time.perf_counter() - started) / steps


def _component_times(env, repeats: int = 30) -> dict:
    from openhelix_ros.sim.cameras import GRIPPER_CAMERA, STATIC_CAMERA, fuse_point_cloud, render

    cameras = env.camera_info()
    timings = {}

    def measure(name, function):
        function()
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        timings[name] = 1000.0 * (time.perf_counter() - started) / repeats

    measure("render_static_200x200_ms", lambda: render(env.client, STATIC_CAMERA, cameras["static"]["extrinsics"],
                                                       env._renderer))
    measure("render_gripper_84x84_ms", lambda: render(env.client, GRIPPER_CAMERA, cameras["gripper"]["extrinsics"],
                                                      env._renderer))
    measure("get_info_ms", env.get_info)
    info = env.get_info()
    measure("oracle_all_34_tasks_ms", lambda: env.tasks.get_task_info(info, info))
    obs = env.get_obs()
    measure("fuse_point_cloud_ms", lambda: fuse_point_cloud(obs, cameras))
    timings["point_cloud_points"] = int(len(fuse_point_cloud(obs, cameras)[0]))
    return timings


def run_sim_bench(out_dir: str = os.path.join("runs", "bench-sim"), steps: int = 300, try_egl: bool = False,
                  progress=print) -> dict:
    """Measure and write the report; returns the results dict."""
    from openhelix_ros.sim import make_env

    rng = np.random.default_rng(0)
    results: dict = {"steps_per_measurement": steps, "target_rendered_steps_per_s": TARGET_RENDERED_STEPS_PER_S,
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "configurations": {}}
    configurations = [("unrendered", {"render": False}),
                      ("rendered_tiny", {"render": True, "renderer": "tiny"}),
                      ("rendered_tiny_full_robot_meshes", {"render": True, "renderer": "tiny",
                                                           "light_robot_visuals": False})]
    if try_egl:
        configurations.append(("rendered_egl", {"render": True, "renderer": "egl"}))
    for name, options in configurations:
        try:
            env = make_env(seed=0, **options)
        except RuntimeError as error:  # e.g. no EGL plugin
            results["configurations"][name] = {"error": str(error)}
            continue
        try:
            count = steps if name != "rendered_tiny_full_robot_meshes" else max(20, steps // 5)
            seconds = _timed_steps(env, count, rng)
            entry = {"options": options, "renderer": env.renderer_name if options["render"] else None,
                     "ms_per_step": 1000.0 * seconds, "steps_per_s": 1.0 / seconds}
            if options["render"]:
                entry.update(_component_times(env))
                image = env.get_obs()["rgb_obs"]["rgb_static"]
                # A frame of one flat colour means the renderer is broken (EGL on llvmpipe does this here).
                entry["image_has_content"] = bool(len(np.unique(image.reshape(-1, 3), axis=0)) > 20)
            results["configurations"][name] = entry
            progress(f"  {name:34s} {entry['steps_per_s']:7.1f} steps/s")
        finally:
            env.close()
    rendered = results["configurations"].get("rendered_tiny", {})
    results["rendered_steps_per_s"] = rendered.get("steps_per_s")
    results["unrendered_steps_per_s"] = results["configurations"]["unrendered"]["steps_per_s"]
    results["renderer"] = "PyBullet TinyRenderer (CPU), arm drawn with its collision meshes"
    results["meets_target"] = bool(rendered.get("steps_per_s", 0.0) >= TARGET_RENDERED_STEPS_PER_S)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write(_markdown(results))
    return results


def _markdown(results: dict) -> str:
    lines = ["# Embedded simulator bench", "",
             f"{results['date']}, {results['machine']}; {results['steps_per_measurement']} control steps "
             "(30 Hz, 8 physics substeps, IK, oracle info) per measurement, small random relative actions.", "",
             f"**Rendered (both cameras, {results['renderer']}): {results['rendered_steps_per_s']:.1f} "
             f"steps/s** (target {results['target_rendered_steps_per_s']:.0f}: "
             f"{'met' if results['meets_target'] else 'NOT met'}); without rendering: "
             f"{results['unrendered_steps_per_s']:.0f} steps/s.", "",
             "| configuration | renderer | ms/step | steps/s | static 200x200 ms | gripper 84x84 ms | image ok |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in results["configurations"].items():
        if "error" in entry:
            lines.append(f"| {name} | - | - | - | - | - | {entry['error']} |")
            continue
        static = entry.get("render_static_200x200_ms")
        gripper = entry.get("render_gripper_84x84_ms")
        lines.append(f"| {name} | {entry['renderer'] or '-'} | {entry['ms_per_step']:.1f} | {entry['steps_per_s']:.1f} | "
                     f"{'-' if static is None else f'{static:.1f}'} | {'-' if gripper is None else f'{gripper:.1f}'} | "
                     f"{ {True: 'yes', False: 'NO (blank)', None: '-'}[entry.get('image_has_content')] } |")
    tiny = results["configurations"].get("rendered_tiny", {})
    if "get_info_ms" in tiny:
        lines += ["", f"Other costs (rendered_tiny): get_info {tiny['get_info_ms']:.2f} ms, oracle over all 34 tasks "
                      f"{tiny['oracle_all_34_tasks_ms']:.2f} ms, fusing both depth images into a coloured cloud "
                      f"{tiny['fuse_point_cloud_ms']:.1f} ms ({tiny['point_cloud_points']} points)."]
    lines += ["", "The arm is drawn with pybullet_data's coarse collision meshes by default "
                  "(`light_robot_visuals=True`); its full visual meshes are about 1 MB of triangles per link "
                  "and dominate TinyRenderer's time (see the full-mesh row).", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=300, help="control steps per measurement")
    parser.add_argument("--out", default=os.path.join("runs", "bench-sim"), help="output folder")
    parser.add_argument("--egl", action="store_true", help="also try PyBullet's EGL renderer plugin")


def run(args: argparse.Namespace) -> int:
    print("embedded simulator bench", flush=True)
    results = run_sim_bench(args.out, steps=args.steps, try_egl=args.egl)
    print(f"rendered {results['rendered_steps_per_s']:.1f} steps/s, unrendered {results['unrendered_steps_per_s']:.0f} "
          f"steps/s -> {args.out}/report.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openhelix_ros.cli.bench_sim", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
