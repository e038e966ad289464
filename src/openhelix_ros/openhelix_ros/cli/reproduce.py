"""``openhelix reproduce``: the play-table recipe end to end, one resumable stage at a time.

Stages, in order (``--stage`` picks some; the default runs every one):

- ``vision``: System 2 learns to see the play table. The embedded simulator renders captioned scenes
  (``openhelix_ros.sim.captions``: a training set and a held-out one), the vision tower learns their facts,
  the projector is aligned to the frozen language model on captions and questions (LLaVA's stage 1),
  and the result is measured on the held-out scenes: the facts read by the tower, System 2's answers and
  its captions, against the best a System 2 that cannot see could do. It writes
  ``<out>/vision/report.md`` / ``report.json`` and ``<out>/vision/system2-embedded-vision.safetensors``;
  ``--ship NAME`` copies the weights into ``openhelix_training/weights/`` as ``vision_weights: NAME``
  (the `embedded` preset loads ``playtable-v1``).

``<out>/reproduce.json`` records the settings and every finished step. Running the same command again
resumes (an interrupted training step continues from its last saved state), and other settings in the
same folder are refused. The stages still to come (policy pre-training on every task, the dual system's
two stages, evaluation and the findings) are issue 10's open items.

Exit status: 0 when every stage asked for finished, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

STAGES = ("vision",)
VISION_STEPS = ("scenes", "tower", "align", "evaluate", "export")
VISION_WEIGHTS_FILE = "system2-embedded-vision.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", default=",".join(STAGES), help=f"comma-separated stages of {', '.join(STAGES)}")
    parser.add_argument("--out", default="runs/reproduce", help="output folder (resumed when it exists)")
    parser.add_argument("--scenes", type=int, default=6000, help="vision: captioned training scenes")
    parser.add_argument("--heldout-scenes", type=int, default=300, help="vision: held-out scenes (another seed)")
    parser.add_argument("--tower-steps", type=int, default=2000)
    parser.add_argument("--align-steps", type=int, default=300)
    parser.add_argument("--align-batch", type=int, default=16)
    parser.add_argument("--eval-scenes", type=int, default=100,
                        help="vision: held-out scenes asked and captioned through the language model")
    parser.add_argument("--system2", default="embedded", help="System 2 preset whose vision tower learns")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", default="", metavar="NAME",
                        help="vision: copy the weights into openhelix_training/weights/ under NAME (the embedded "
                             "preset loads playtable-v1); a shipped name is never rewritten with other weights")


class ReproduceState:
    """``<out>/reproduce.json``: the settings and the finished steps, written after every step."""

    def __init__(self, out: Path, settings: dict):
        self.path = out / "reproduce.json"
        self.settings = settings
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            saved = json.loads(self.path.read_text())
            if saved.get("settings") != settings:
                differ = sorted(k for k in set(settings) | set(saved.get("settings", {}))
                                if settings.get(k) != saved.get("settings", {}).get(k))
                raise ValueError(f"{out} holds a run with other settings ({', '.join(differ)}); use another --out")
            self.done = saved.get("done", {})

    def finished(self, step: str) -> bool:
        return step in self.done

    def finish(self, step: str, record: dict) -> None:
        self.done[step] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": self.settings, "done": self.done}, indent=1))
        tmp.replace(self.path)


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stdout, dynamic_ncols=True)


def _vision_system2(preset: str):
    """The preset's System 2 with its seeded tower: vision pretraining starts from there."""
    from openhelix_training.configuration_system2 import System2Config
    from openhelix_training.modeling_system2 import System2

    return System2(System2Config.preset(preset, vision_weights=""))


def run_vision(args: argparse.Namespace, state: ReproduceState, out: Path) -> None:
    from openhelix_ros.sim.captions import DATASET_VERSION, write_captioned_scenes
    from openhelix_training import vision_pretraining as vp
    from openhelix_training.checkpoint import git_revision

    work = out / "vision"
    train_dir, heldout_dir = work / "scenes-train", work / "scenes-heldout"
    cfg = vp.VisionPretrainConfig(tower_steps=args.tower_steps, align_steps=args.align_steps,
                                  align_batch=args.align_batch, eval_scenes=args.eval_scenes, seed=args.seed)
    if not state.finished("vision.scenes"):
        started = time.monotonic()
        for directory, count, seed in ((heldout_dir, args.heldout_scenes, args.seed + 1),
                                       (train_dir, args.scenes, args.seed)):
            with _bar(count, f"scenes {directory.name}") as bar:
                write_captioned_scenes(directory, count, seed=seed, progress=bar.update)
        state.finish("vision.scenes", {"seconds": round(time.monotonic() - started, 1),
                                       "train": args.scenes, "heldout": args.heldout_scenes})
    train, heldout = vp.load_scene_set(train_dir), vp.load_scene_set(heldout_dir)
    system2 = _vision_system2(args.system2)
    for step, total, function in (("tower", cfg.tower_steps, vp.train_tower),
                                  ("align", cfg.align_steps, vp.align_projector)):
        if step == "align":
            # the tower is the one stage 1 trained, whether it ran now or in an earlier session
            vp.load_tower_state(system2, work / "train")
        if state.finished(f"vision.{step}"):
            continue
        started = time.monotonic()
        with _bar(total, f"vision {step}") as bar:

            def progress(n, loss, bar=bar):
                bar.update(n)
                bar.set_postfix(loss=f"{loss:.3f}")

            result = function(system2, train, cfg, work / "train", progress=progress)
        state.finish(f"vision.{step}", {"seconds": round(time.monotonic() - started, 1), "steps": result["steps"],
                                        "final_loss": result["log"][-1]["loss"] if result["log"] else None})
    vp.load_align_state(system2, work / "train")
    if not state.finished("vision.evaluate"):
        started = time.monotonic()
        report = vp.evaluate(system2, heldout, cfg, vp.load_fact_queries(system2, work / "train"), train.records)
        report["settings"] = state.settings
        report["training"] = {k: v for k, v in state.done.items() if k.startswith("vision.")}
        (work / "report.json").write_text(json.dumps(report, indent=1))
        (work / "report.md").write_text(vp.markdown_report(report))
        state.finish("vision.evaluate", {"seconds": round(time.monotonic() - started, 1),
                                         "vqa": report.get("vqa", {}).get("accuracy"),
                                         "caption_recall": report.get("caption", {}).get("accuracy"),
                                         "tower": report.get("tower", {}).get("accuracy"),
                                         "prior": report.get("prior", {}).get("accuracy")})
    weights = work / VISION_WEIGHTS_FILE
    if not state.finished("vision.export"):
        report = json.loads((work / "report.json").read_text())
        provenance = {"recipe": "openhelix reproduce --stage vision", "settings": state.settings,
                      "revision": git_revision(), "dataset_version": DATASET_VERSION,
                      "heldout": {k: report.get(k, {}).get("accuracy") for k in ("prior", "tower", "vqa", "caption")}}
        vp.export_vision_weights(system2, weights, provenance)
        state.finish("vision.export", {"path": str(weights)})
    print(f"[reproduce] vision: {work / 'report.md'}; weights {weights}")
    if args.ship:
        ship_vision_weights(args, weights, work / "report.md")


def ship_vision_weights(args: argparse.Namespace, weights: Path, report: Path) -> None:
    """Copy the weights (and their report beside them) to where ``vision_weights: <name>`` finds them."""
    import re

    from openhelix_training.modeling_system2 import file_sha256, shipped_vision_weights_file

    if args.system2 != "embedded":
        raise ValueError(f"--ship is for the embedded preset's weights; these are {args.system2!r}'s")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", args.ship):
        raise ValueError(f"--ship name {args.ship!r}: use lower-case letters, digits, '.' and '-'")
    target = shipped_vision_weights_file(args.ship)
    if target.is_file():
        if file_sha256(target) == file_sha256(weights):
            print(f"[reproduce] {target} already holds these weights")
            return
        raise ValueError(f"{target} holds other weights under the name {args.ship!r}: checkpoints pin it, so ship "
                         "these under a new name")
    target.parent.mkdir(parents=True, exist_ok=True)
    for source, destination in ((report, target.with_suffix(".md")), (weights, target)):
        tmp = destination.with_name(destination.name + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(destination)
    print(f"[reproduce] shipped as vision_weights {args.ship!r}: {target}")


def run(args: argparse.Namespace) -> int:
    stages = [s.strip() for s in args.stage.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        print(f"openhelix reproduce: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    for name in ("scenes", "heldout_scenes", "tower_steps", "align_steps", "align_batch", "eval_scenes"):
        if getattr(args, name) < (0 if name == "eval_scenes" else 1):
            print(f"openhelix reproduce: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if args.align_batch > args.scenes:
        print(f"openhelix reproduce: --align-batch {args.align_batch} is more than --scenes {args.scenes}",
              file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("scenes", "heldout_scenes", "tower_steps", "align_steps", "align_batch",
                                              "eval_scenes", "system2", "seed")}
    try:
        state = ReproduceState(out, settings)
    except ValueError as error:
        print(f"openhelix reproduce: {error}", file=sys.stderr)
        return 2
    runners = {"vision": run_vision}
    for stage in stages:
        try:
            runners[stage](args, state, out)
        except KeyboardInterrupt:
            print(f"[reproduce] {stage}: interrupted; run the same command to resume", file=sys.stderr)
            return 1
        except Exception as error:  # a failed stage is reported, never a score
            traceback.print_exc()
            print(f"[reproduce] {stage} failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0
