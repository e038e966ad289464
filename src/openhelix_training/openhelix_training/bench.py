"""Model latency benchmark: System 1 trajectory inference at 1, 5, 10, 25 denoising steps (whole
predict: scene encoding, FPS, denoising, pose assembly), System 1 `3dda` (3D Diffuser Actor at its
released shapes) at 25 DDPM and 5 DDIM steps, and System 2 latent latency, written as JSON and
Markdown. `python -m openhelix_training.bench [--out runs/bench-models]`.

On a GPU, the same run adds System 1 on CUDA and System 2 with LLaVA-1.5-7B shapes (random weights,
bf16). On the CPU, each model runs with one intra-op thread by default: in the deployed graph System 1
and System 2 run side by side on a 2-core machine, and a second thread per model oversubscribes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .data.calvin import _look_at, _render
from .observation import CameraView, Observation

DEFAULT_OUT = "runs/bench-models"
STEPS = (1, 5, 10, 25)


def calvin_like_observation() -> Observation:
    """A CALVIN-sized observation: static 200x200 and gripper 84x84 RGB-D."""
    cams = []
    for name, size, eye in (("static", 200, (0.0, -0.9, 0.9)), ("gripper", 84, (0.05, -0.05, 0.4))):
        k = np.array([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1.0]])
        ext = _look_at(eye, (0, 0, 0))
        rgb, depth = _render(ext, k, size, (0.05, 0.0), (200, 30, 30))
        cams.append(CameraView(rgb, depth, k, ext, name))
    return Observation(cameras=cams)


def _stats(times: list[tuple[float, float]]) -> dict:
    """Wall-clock p50/p99/mean, and the p50 of this process's CPU time per call: with one thread on an
    idle core the two agree; on a shared, loaded machine wall time grows while CPU time does not, so
    cpu_p50_ms estimates the uncontended latency (reported beside, never instead of, wall time)."""
    a = np.asarray([t[0] for t in times]) * 1000.0
    c = np.asarray([t[1] for t in times]) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "cpu_p50_ms": round(float(np.percentile(c, 50)), 2), "n": len(a)}


def _time(fn, repeats: int, warmup: int, cuda: bool) -> list[tuple[float, float]]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if cuda:
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def bench_system1(config: str = "default", device: str = "cpu", steps=STEPS, repeats: int = 50,
                  warmup: int = 5, **overrides) -> dict:
    from .modeling_system1 import System1

    torch.manual_seed(0)
    model = System1.from_config(config, **overrides).to(device).eval()
    obs = calvin_like_observation()
    if model.config.scene_encoder == "points":
        xyz, rgb = obs.point_cloud()  # both cameras lifted: what the bridge's `points` topic carries
        obs = Observation(points=xyz, colors=(rgb * 255).astype(np.uint8))
    latent = np.random.default_rng(0).normal(size=model.config.latent_dim).astype(np.float32)
    proprio = np.array([0.05, -0.02, 0.3, 1, 0, 0, 0, -1, 0, 1], np.float32)
    # interleave the step counts round by round, so that load from other processes on a shared machine
    # falls on all of them alike
    times: dict[int, list[float]] = {n: [] for n in steps}
    for n in steps:
        _time(lambda n=n: model.predict(obs, latent, proprio, num_inference_steps=n), 0, warmup, False)
    for _ in range(repeats):
        for n in steps:
            times[n] += _time(lambda n=n: model.predict(obs, latent, proprio, num_inference_steps=n), 1, 0,
                              device.startswith("cuda"))
    rows = {str(n): _stats(times[n]) for n in steps}
    if overrides:
        config = f"{config} " + " ".join(f"{k}={v}" for k, v in overrides.items())
    return {"config": config, "device": device, "default_steps": model.config.num_inference_steps,
            "input": f"point cloud of {len(obs.points)} points" if obs.points is not None else
            "cameras " + ", ".join(f"{c.name} {c.rgb.shape[1]}x{c.rgb.shape[0]}" for c in obs.cameras),
            "parameters": sum(p.numel() for p in model.parameters()), "steps": rows}


def bench_diffuser_actor(preset: str = "3dda", device: str = "cpu", schedules=None,
                         repeats: int = 5, warmup: int = 1) -> dict:
    """System 1 `3dda` (random weights at the released shapes): one whole policy call, as the release
    makes it on CALVIN (two 160x160 crops, backbone, feature pyramid, farthest point sampling, denoising),
    per sampling schedule."""
    from .modeling_diffuser_actor import DiffuserActor

    torch.manual_seed(0)
    model = DiffuserActor.from_config(preset).to(device).eval()
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    ncam, side = len(cfg.camera_names), cfg.image_size
    rgb = torch.rand(1, ncam, 3, side, side, generator=g).to(device)
    pcd = (torch.rand(1, ncam, 3, side, side, generator=g) * 0.6 - 0.3).to(device)
    instruction = torch.randn(1, cfg.instruction_length, cfg.instruction_dim, generator=g).to(device)
    gripper = torch.tensor([[[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]] * cfg.nhist]).to(device)
    rows = {}
    # the release's sampler (every DDPM step), and 5 DDIM steps (the GPU target's)
    for scheduler, steps in schedules or (("ddpm", cfg.diffusion_timesteps), ("ddim", 5)):
        model.config.inference_scheduler, model.config.num_inference_steps = scheduler, steps
        times = _time(lambda: model.compute_trajectory(rgb, pcd, instruction, gripper), repeats, warmup,
                      device.startswith("cuda"))
        rows[f"{scheduler} {steps}"] = _stats(times)
    return {"config": preset, "device": device, "parameters": sum(p.numel() for p in model.parameters()),
            "input": f"{ncam} cameras {side}x{side}, {cfg.instruction_length} instruction tokens", "schedules": rows}


def bench_system2(config: str, device: str = "cpu", repeats: int = 20, warmup: int = 2, **overrides) -> dict:
    from .modeling_system2 import System2

    t0 = time.perf_counter()
    model = System2.from_config(config, **overrides).to(device).eval()
    load_s = time.perf_counter() - t0
    image = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    t = _time(lambda: model.encode(image, "open the drawer"), repeats, warmup, device.startswith("cuda"))
    stats = _stats(t)
    stats["hz_at_p50"] = round(1000.0 / stats["p50_ms"], 2) if stats["p50_ms"] else None
    n_tokens = int(model.tokenize(["open the drawer"])["input_ids"].shape[1])
    return {"config": config, "device": device, "load_s": round(load_s, 1), "prompt_tokens": n_tokens,
            "hidden_size": model.hidden_size, "trainable_prompt_tuning": model.trainable_parameter_count(),
            "parameters": sum(p.numel() for p in model.parameters()), **stats}


def bench_openhelix_system2(device: str = "cuda", repeats: int = 20, warmup: int = 2) -> dict:
    """OpenHelix's System 2 at its released widths with random weights in bfloat16 (the release's dtype).
    Its prompt needs LLaVA's LLaMA tokenizer: the directory named by OPENHELIX_LLAVA_DIR."""
    from .modeling_openhelix import OpenHelixSystem2

    tokenizer = os.environ.get("OPENHELIX_LLAVA_DIR")
    if not tokenizer:
        return {"config": "openhelix-7b", "skipped": "needs LLaVA's tokenizer: set OPENHELIX_LLAVA_DIR"}
    t0 = time.perf_counter()
    model = OpenHelixSystem2.from_config("openhelix-7b", tokenizer_path=tokenizer, init_device=device).to(device).eval()
    load_s = time.perf_counter() - t0
    image = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    stats = _stats(_time(lambda: model.encode(image, "open the drawer"), repeats, warmup, device.startswith("cuda")))
    stats["hz_at_p50"] = round(1000.0 / stats["p50_ms"], 2) if stats["p50_ms"] else None
    return {"config": "openhelix-7b", "device": device, "load_s": round(load_s, 1),
            "prompt_tokens": len(model.prompt_token_ids("open the drawer")), "hidden_size": model.config.hidden_size,
            "parameters": sum(p.numel() for p in model.parameters()), **stats}


def _markdown(result: dict) -> str:
    lines = [f"# Model latency ({result['machine']})", "",
             f"torch {result['torch']}, threads {result['threads']}, {result['date']}; load average (1, 5, 15 min) "
             f"before {result['load_average_before']}, after {result.get('load_average_after')} "
             "(other processes on a shared machine inflate the figures)", ""]
    for s1 in result["system1"]:
        lines += [f"## System 1 `{s1['config']}` on {s1['device']} ({s1['parameters'] / 1e6:.2f} M params, "
                  f"default {s1['default_steps']} steps; input: {s1['input']})", "",
                  "| denoising steps | p50 ms | p99 ms | mean ms | CPU-time p50 ms |", "|---:|---:|---:|---:|---:|"]
        for n, r in s1["steps"].items():
            lines.append(f"| {n} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | {r['cpu_p50_ms']} |")
        lines.append("")
    for dda in result.get("diffuser_actor", []):
        if "skipped" in dda:
            lines += [f"## System 1 `{dda['config']}` on {dda['device']}: not measured ({dda['skipped']})", ""]
            continue
        lines += [f"## System 1 `{dda['config']}` (3D Diffuser Actor, released shapes, random weights) on "
                  f"{dda['device']} ({dda['parameters'] / 1e6:.1f} M params; input: {dda['input']})", "",
                  "| sampler | p50 ms | p99 ms | mean ms | CPU-time p50 ms | calls |", "|---|---:|---:|---:|---:|---:|"]
        for name, r in dda["schedules"].items():
            lines.append(f"| {name} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | {r['cpu_p50_ms']} | {r['n']} |")
        lines.append("")
    if result["system2"]:
        lines += ["## System 2 (image + instruction -> latent)", "",
                  "| config | device | p50 ms | p99 ms | Hz at p50 | CPU-time p50 ms | prompt tokens | params | load s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["system2"]:
            if "skipped" in r:
                lines.append(f"| {r['config']} | - | skipped: {r['skipped']} | | | | | | |")
                continue
            lines.append(f"| {r['config']} | {r['device']} | {r['p50_ms']} | {r['p99_ms']} | {r['hz_at_p50']} | "
                         f"{r['cpu_p50_ms']} | {r['prompt_tokens']} | {r['parameters'] / 1e6:.1f} M | {r['load_s']} |")
        lines.append("")
    t = result["targets"]
    lines += ["## Targets (shared/DESIGN.md)", ""]
    lines += [f"- {k}: {'met' if v['met'] else 'NOT met'} ({v['value']} vs {v['target']})" for k, v in t.items()]
    return "\n".join(lines) + "\n"


def run_model_bench(out_dir: str | os.PathLike = DEFAULT_OUT,
                    system1_configs=("default", ("default", {"scene_encoder": "points"})),
                    system2_configs=("tiny", "embedded"), steps=STEPS, repeats: int = 50,
                    system2_repeats: int = 20, threads: int | None = 1, include_gpu: bool = True,
                    diffuser_actor_preset: str | None = "3dda", diffuser_actor_repeats: int = 5) -> dict:
    """Runs the benchmark and writes results.json and results.md into out_dir; returns the result.

    system1_configs: preset names or (preset, overrides) pairs; by default the camera `default` and the
    same model reading the lifted point cloud (scene_encoder="points", the ROS `points` topic's form)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        torch.set_num_threads(threads)
    cuda = include_gpu and torch.cuda.is_available()
    result = {"machine": torch.cuda.get_device_name(0) if cuda else f"{platform.processor() or 'cpu'} "
              f"({os.cpu_count()} cores)", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "system1": [], "system2": [],
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    for cfg in system1_configs:
        name, over = (cfg, {}) if isinstance(cfg, str) else cfg
        result["system1"].append(bench_system1(name, "cpu", steps, repeats, **over))
        if cuda:
            result["system1"].append(bench_system1(name, "cuda", steps, repeats, **over))
    result["diffuser_actor"] = []
    if diffuser_actor_preset:
        name = diffuser_actor_preset
        result["diffuser_actor"].append(bench_diffuser_actor(name, "cpu", repeats=diffuser_actor_repeats))
        if cuda:
            result["diffuser_actor"].append(bench_diffuser_actor(name, "cuda", repeats=max(diffuser_actor_repeats, 20)))
        else:
            result["diffuser_actor"].append({"config": name, "device": "cuda", "skipped": "no GPU"})
    for cfg in system2_configs:
        try:
            result["system2"].append(bench_system2(cfg, "cpu", system2_repeats))
        except (FileNotFoundError, ImportError) as exc:
            result["system2"].append({"config": cfg, "skipped": str(exc).splitlines()[0]})
    if cuda:
        result["system2"].append(bench_system2("llava-1.5-7b", "cuda", system2_repeats, source="random",
                                               init_device="cuda"))
        result["system2"].append(bench_openhelix_system2("cuda", system2_repeats))
    else:
        result["system2"].append({"config": "llava-1.5-7b", "skipped": "no GPU"})
        result["system2"].append({"config": "openhelix-7b", "skipped": "no GPU"})
    targets = {}
    for s1 in result["system1"]:
        if s1["device"] == "cpu" and s1["config"] == "default":  # the camera default (what the target names)
            p50 = s1["steps"].get(str(s1["default_steps"]), {}).get("p50_ms")
            if p50 is not None:
                targets["System 1 default p50 on CPU <= 30 ms"] = {"value": p50, "target": 30, "met": p50 <= 30}
        if s1["device"] == "cuda" and s1["config"] == "default":
            p50 = s1["steps"].get(str(s1["default_steps"]), {}).get("p50_ms")
            if p50 is not None:
                targets["System 1 default p50 on GPU <= 5 ms"] = {"value": p50, "target": 5, "met": p50 <= 5}
    for dda in result["diffuser_actor"]:
        if dda["device"] == "cuda" and dda["config"] == "3dda" and "schedules" in dda:
            p50 = dda["schedules"]["ddim 5"]["p50_ms"]
            targets["System 1 3dda p50 at 5 DDIM steps on GPU <= 10 ms"] = {"value": p50, "target": 10, "met": p50 <= 10}
    for s2 in result["system2"]:
        if s2.get("config") == "embedded" and "hz_at_p50" in s2:
            targets["System 2 embedded >= 2 Hz"] = {"value": s2["hz_at_p50"], "target": 2, "met": s2["hz_at_p50"] >= 2}
        if s2.get("config") == "openhelix-7b" and "hz_at_p50" in s2:
            targets["System 2 openhelix-7b (bf16) >= 10 Hz"] = {"value": s2["hz_at_p50"], "target": 10,
                                                               "met": s2["hz_at_p50"] >= 10}
        if s2.get("config") == "llava-1.5-7b" and "hz_at_p50" in s2:
            targets["System 2 LLaVA-1.5-7B >= 10 Hz"] = {"value": s2["hz_at_p50"], "target": 10,
                                                          "met": s2["hz_at_p50"] >= 10}
    result["targets"] = targets
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(_markdown(result))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openhelix_training.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--system2", nargs="*", default=["tiny", "embedded"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per model (0: torch default)")
    args = parser.parse_args(argv)
    result = run_model_bench(args.out, system2_configs=tuple(args.system2), repeats=args.repeats,
                             threads=args.threads or None)
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
