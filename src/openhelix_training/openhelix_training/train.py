"""Two-stage training of System 2 + System 1 (OpenHelix): stage 1 pre-aligns <ACT>/projector/heads with
the policy frozen; stage 2 trains jointly. `openhelix-train --config <yaml>`.

Multi-GPU and bf16 go through accelerate:
    accelerate launch --num_processes 8 --mixed_precision bf16 -m openhelix_training.train --config cfg.yaml
    torchrun --nproc_per_node 8 -m openhelix_training.train --config cfg.yaml   (accelerate reads the env)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .checkpoint import (
    CHECKPOINTS_DIR,
    RESUME_STATE_NAME,
    SYSTEM1_DIR,
    SYSTEM2_DIR,
    TRAINING_STATE_NAME,
    CheckpointError,
    checkpoint_name,
    mark_latest,
    read_resume_state,
    resolve_checkpoint,
    save_resume_state,
    step_checkpoints,
)
from .geometry import matrix_to_rot6d, rot6d_to_matrix
from .goal import check_goal_fit
from .train_config import TrainConfig, load_train_config

# ------------------------------------------------------------------------------------------------------
# data


def build_dataset(cfg: TrainConfig, system1_config):
    from .data.calvin import CalvinDataset, write_calvin_episodes
    from .data.rosbag import BagDataset

    d = cfg.data
    if d.kind == "synthetic":
        root = Path(d.path or Path(cfg.output_dir) / "synthetic_calvin")
        if not (root / "lang_annotations" / "auto_lang_ann.npy").is_file():
            write_calvin_episodes(root, seed=cfg.seed, **dataclasses.asdict(d.synthetic))
        return CalvinDataset(root, camera_names=system1_config.camera_names, frames=d.frames,
                             latent_delay=d.latent_delay, trajectory_length=system1_config.trajectory_length,
                             max_windows=d.max_windows)
    if d.kind == "calvin":
        if not d.path:
            raise ValueError("data.kind 'calvin' needs data.path: a CALVIN split directory")
        return CalvinDataset(d.path, camera_names=system1_config.camera_names, frames=d.frames,
                             latent_delay=d.latent_delay, trajectory_length=system1_config.trajectory_length,
                             max_windows=d.max_windows)
    if d.kind == "rosbag":
        if not d.path:
            raise ValueError("data.kind 'rosbag' needs data.path: a bag directory or a list of them")
        return BagDataset(d.path, frames=d.frames, latent_delay=d.latent_delay,
                          trajectory_length=system1_config.trajectory_length, max_points=d.max_points,
                          trajectory=d.trajectory)
    raise ValueError(f"data.kind must be 'synthetic', 'calvin' or 'rosbag', got {d.kind!r}")


# ------------------------------------------------------------------------------------------------------
# losses


def aux_loss(aux: dict, batch: dict) -> torch.Tensor:
    """OpenHelix's auxiliary loss on the first future waypoint: 30 L1 position + 10 L1 6D rotation
    (+ BCE gripper); on the next k waypoints for a head that predicts a coarse chunk of k."""
    dev = aux["position"].device
    future = slice(1, 1 + aux["position"].shape[1]) if aux["position"].dim() == 3 else 1
    pos = batch["rel_positions"][:, future].to(dev)
    rot = batch["rot6d"][:, future].to(dev)
    grip = batch["gripper_open"][:, future].to(dev)
    return (30 * F.l1_loss(aux["position"].float(), pos) + 10 * F.l1_loss(aux["rot6d"].float(), rot)
            + F.binary_cross_entropy_with_logits(aux["gripper_logit"].float(), grip))


CLIP_TEXT_PRESETS = ("clip-text", "tiny-clip-text")


def system2_class(preset: str):
    """The class a System 2 preset builds: the MLLM (System2) or the frozen CLIP text encoder of the
    "Only Policy" baseline (ClipTextSystem2)."""
    if preset in CLIP_TEXT_PRESETS:
        from .modeling_clip_text import ClipTextSystem2

        return ClipTextSystem2
    from .modeling_system2 import System2

    return System2


def goal_inputs(out2: dict, coarse_actions: int) -> dict:
    """System 2's forward output as System 1's goal arguments: the latent tokens and their mask, and with
    ``coarse_actions`` the auxiliary head's coarse chunk (B, k, 10) as a node would send it (rotations
    made proper, openness from the logit). The chunk is detached: it conditions the policy, and only the
    auxiliary loss trains the head that makes it (RoboDual's generalist is not trained by its specialist)."""
    goal = {"latent": out2["latent_tokens"], "latent_mask": out2["latent_mask"]}
    if coarse_actions:
        aux = out2["aux"]
        rot6d = matrix_to_rot6d(rot6d_to_matrix(aux["rot6d"].float()))
        goal["coarse"] = torch.cat([aux["position"].float(), rot6d,
                                    torch.sigmoid(aux["gripper_logit"].float())[..., None]], dim=-1).detach()
    return goal


def clip_alignment_loss(latent: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                        instructions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE between latents and instruction embeddings; samples with the same instruction
    count as positives of each other."""
    a = F.normalize(latent.float(), dim=-1)
    b = F.normalize(text.float(), dim=-1)
    logits = logit_scale.float().clamp(max=np.log(100)).exp() * a @ b.t()
    same = torch.tensor([[x == y for y in instructions] for x in instructions], dtype=torch.float32,
                        device=latent.device)
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-target * F.log_softmax(logits.t(), 1), 1).mean())


# ------------------------------------------------------------------------------------------------------
# the loop


class Trainer:
    def __init__(self, cfg: TrainConfig | dict):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        from .modeling_system1 import System1

        self.cfg = cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
        t = cfg.training
        self.out = Path(cfg.output_dir)
        self.accelerator = Accelerator(mixed_precision=t.mixed_precision,
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        pretrained = cfg.system1.pretrained
        if pretrained:
            self.system1 = System1.from_pretrained(pretrained, **cfg.system1.overrides)
        else:
            self.system1 = System1.from_config(cfg.system1.preset, **cfg.system1.overrides)
        s2over = dict(cfg.system2.overrides)
        if t.gradient_checkpointing and cfg.system2.preset not in CLIP_TEXT_PRESETS:
            s2over["gradient_checkpointing"] = True
        if cfg.system2.preset in CLIP_TEXT_PRESETS and (t.aux_loss or t.clip_loss or t.stage1_steps):
            raise ValueError(f"System 2 {cfg.system2.preset!r} trains nothing (3D Diffuser Actor's frozen CLIP): "
                             "set training.stage1_steps=0, aux_loss=false and clip_loss=false")
        self.system2 = system2_class(cfg.system2.preset).from_config(cfg.system2.preset, **s2over)
        check_goal_fit(self.system2.config, self.system1.config)
        if self.system1.config.latent_layout == "tokens" and hasattr(self.system2, "max_latent_tokens"):
            most = self.system2.max_latent_tokens()
            if most > self.system1.config.max_latent_tokens:
                raise ValueError(f"System 2's latent can have up to {most} tokens (its longest prompt) but System 1 "
                                 f"reads at most max_latent_tokens={self.system1.config.max_latent_tokens}: raise it")
        self.dataset = build_dataset(cfg, self.system1.config)
        if len(self.dataset) == 0:
            raise ValueError("the training data set is empty")
        if not pretrained and t.stage1_steps > 0:
            import warnings

            warnings.warn(
                "stage 1 (policy frozen) with a freshly initialised policy: its AdaLN-zero gates are closed, so "
                "no gradient reaches the latent and only the auxiliary/alignment losses train System 2 there. "
                "The paper pre-aligns against a pre-trained policy (system1.pretrained).", stacklevel=2)
        if not pretrained:
            from .data.sample import compute_normalization

            self.system1.set_normalization(compute_normalization(self.dataset))
        policy = list(self.system1.parameters())
        heads = list(self.system2.head_parameters())
        head_ids = {id(p) for p in heads}
        mllm = [p for p in self.system2.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": policy, "lr": t.policy_lr, "weight_decay": t.policy_weight_decay, "name": "policy"},
                  {"params": heads, "lr": t.heads_lr, "weight_decay": 0.0, "name": "heads"}]
        if mllm:
            groups.append({"params": mllm, "lr": t.mllm_lr, "weight_decay": 0.0, "name": "mllm"})
        self.optimizer = torch.optim.AdamW(groups)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=t.batch_size, shuffle=True, drop_last=len(self.dataset) >= t.batch_size,
            collate_fn=_collate, num_workers=t.num_workers, generator=self.generator)
        self.system1, self.system2, self.optimizer, self.loader = self.accelerator.prepare(
            self.system1, self.system2, self.optimizer, self.loader)
        self.step = 0
        # Where the batch stream stands (see batches): the loader generator's state when the current epoch
        # began, and how many of that epoch's batches were drawn. A checkpoint keeps both, so that a resumed
        # run draws the batches an uninterrupted one would, also from the middle of an epoch.
        self.epoch_generator_state = self.generator.get_state()
        self.batches_into_epoch = 0
        self.rng = np.random.default_rng(cfg.seed)
        self.tb = None
        self.latent_cache: dict | None = None
        if t.cache_latents:
            problems = [why for bad, why in (
                (self.s2.config.mode != "frozen", f"system2 mode is {self.s2.config.mode!r}, not 'frozen'"),
                (t.stage1_steps > 0, "stage1_steps > 0 (stage 1 trains only System 2)"),
                (t.aux_loss, "aux_loss is on (it trains System 2's heads)"),
                (t.clip_loss, "clip_loss is on (it trains System 2's heads)")) if bad]
            if problems:
                raise ValueError("training.cache_latents needs a System 2 that does not train: " + "; ".join(problems))
            # the projector and <ACT> keep their initial values, which the checkpoint then stores
            self.s2.requires_grad_(False)
            self.latent_cache = {}
        if not pretrained and t.latent_normalization:
            self.s1.set_latent_normalization(self.initial_latents())

    @property
    def s1(self):
        return self.accelerator.unwrap_model(self.system1)

    @property
    def s2(self):
        return self.accelerator.unwrap_model(self.system2)

    def stage_of(self, step: int) -> int:
        return 1 if step < self.cfg.training.stage1_steps else 2

    def set_stage(self, stage: int) -> None:
        # stage 1: the policy is frozen (no gradient, so AdamW leaves it untouched: no decay either)
        self.s1.requires_grad_(stage == 2)

    def batches(self):
        """The training batches, epoch after epoch, continuing from the stream position a resumed
        checkpoint set: its epoch is drawn again from the generator state it began with, the batches
        already trained on skipped by index (accelerate's skip_first_batches reads no data for them)."""
        skip = self.batches_into_epoch
        while True:
            if skip:
                from accelerate.data_loader import skip_first_batches

                self.generator.set_state(self.epoch_generator_state)
                loader = skip_first_batches(self.loader, skip)
            else:
                self.epoch_generator_state = self.generator.get_state()
                loader = self.loader
            self.batches_into_epoch = skip
            for batch in loader:
                self.batches_into_epoch += 1
                yield batch
            skip = 0

    def initial_latents(self, max_samples: int = 64) -> torch.Tensor:
        """System 2's latents of the training data before training: every distinct instruction when System
        2 is text-only, else up to ``max_samples`` samples spread over the data set."""
        samples = self.dataset
        if self.s2.config.use_image:
            idx = np.linspace(0, len(samples) - 1, min(len(samples), max_samples)).astype(int)
            chosen = [samples[int(i)] for i in idx]
        else:
            by_text = {}
            for i in range(len(samples)):
                by_text.setdefault(samples[i].instruction, samples[i])
            chosen = list(by_text.values())
        out = []
        for start in range(0, len(chosen), 8):
            part = chosen[start : start + 8]
            batch = {"instructions": [s.instruction for s in part], "images": [s.image for s in part]}
            if self.latent_cache is not None:
                goal = self.cached_goals(batch)
            else:
                with torch.no_grad():
                    goal = self.system2_goals(batch, self.s2)
            # every real token: the normalization is per token width, whatever the token count
            out.append(goal["latent"][goal["latent_mask"]].float())
        return torch.cat(out)

    def system2_goals(self, batch: dict, model=None) -> dict:
        """System 2's forward pass on a batch: its goal for System 1 (see goal_inputs), the auxiliary
        predictions (``aux``) and the latent's summary vector (``summary``, for the alignment loss).
        ``model``: the module to call; the training step's default is the prepared (possibly distributed)
        one, the no-grad paths pass the unwrapped System 2 (their calls differ between processes, and a
        distributed forward on some of them only would wait for the others)."""
        s2 = self.s2
        px = s2.preprocess_images(batch["images"]) if s2.config.use_image else None
        out2 = (model or self.system2)(px, batch["instructions"])
        # (a System 2 without an auxiliary head, clip-text, gives no "aux")
        return {"aux": out2.get("aux"), "summary": out2["latent"], **goal_inputs(out2, self.s1.config.coarse_actions)}

    def _latent_key(self, instruction: str, image) -> tuple:
        if not self.s2.config.use_image:
            return (instruction,)
        import hashlib

        image = np.ascontiguousarray(image)
        return (instruction, image.shape, hashlib.sha1(image.tobytes()).hexdigest())

    def cached_goals(self, batch: dict) -> dict:
        """The frozen System 2's goals of a batch (System 1's goal arguments, see goal_inputs), each
        distinct (instruction, image; or instruction alone for a text-only System 2) encoded once, in eval
        mode as the node encodes."""
        s2 = self.s2
        keys = [self._latent_key(text, img) for text, img in zip(batch["instructions"], batch["images"], strict=True)]
        missing = {}
        for key, text, img in zip(keys, batch["instructions"], batch["images"], strict=True):
            if key not in self.latent_cache and key not in missing:
                missing[key] = (text, img)
        if missing:
            was_training = s2.training
            s2.eval()
            try:
                with torch.no_grad():
                    texts = [text for text, _ in missing.values()]
                    images = [img for _, img in missing.values()]
                    goal = self.system2_goals({"instructions": texts, "images": images}, self.s2)
            finally:
                s2.train(was_training)
            for i, key in enumerate(missing):
                tokens = goal["latent"][i][goal["latent_mask"][i]].float().detach()
                coarse = goal["coarse"][i].detach() if "coarse" in goal else None
                self.latent_cache[key] = (tokens, coarse)
        entries = [self.latent_cache[key] for key in keys]
        n = max(len(tokens) for tokens, _ in entries)
        latent = torch.zeros((len(entries), n, entries[0][0].shape[-1]))
        mask = torch.zeros((len(entries), n), dtype=torch.bool)
        for i, (tokens, _) in enumerate(entries):
            latent[i, : len(tokens)], mask[i, : len(tokens)] = tokens, True
        out = {"latent": latent, "latent_mask": mask}
        if entries[0][1] is not None:
            out["coarse"] = torch.stack([coarse for _, coarse in entries])
        return out

    def train_step(self, batch: dict, stage: int) -> dict:
        t = self.cfg.training
        s2 = self.s2
        with self.accelerator.autocast():
            out2 = self.cached_goals(batch) if self.latent_cache is not None else self.system2_goals(batch)
            obs = self.s1.observation_tensors(batch["observations"], self.rng)
            losses = self.system1(obs, out2["latent"], batch["proprio"], batch["rel_positions"], batch["rot6d"],
                                  batch["gripper_open"], latent_mask=out2["latent_mask"], coarse=out2.get("coarse"))
            loss = losses["loss"]
            metrics = {k: float(v.detach()) for k, v in losses.items()}
            if t.aux_loss and stage in t.aux_stages:
                a = aux_loss(out2["aux"], batch)
                loss = loss + t.aux_weight * a
                metrics["aux"] = float(a.detach())
            if t.clip_loss:
                c = clip_alignment_loss(out2["summary"], s2.instruction_embedding(batch["instructions"]),
                                        s2.logit_scale, batch["instructions"])
                loss = loss + t.clip_weight * c
                metrics["clip"] = float(c.detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {metrics}")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if t.grad_clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            if params:
                self.accelerator.clip_grad_norm_(params, t.grad_clip)
        self.optimizer.step()
        metrics["total"] = float(loss.detach())
        return metrics

    # --- persistence ---

    def save(self) -> Path:
        if not self.accelerator.is_main_process:
            return self.out
        target = self.out / CHECKPOINTS_DIR / checkpoint_name(self.step)
        self.s1.save_pretrained(target / SYSTEM1_DIR)
        self.s2.save_pretrained(target / SYSTEM2_DIR)
        save_resume_state(target, {
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "rng": self.rng.bit_generator.state,
            "epoch_generator": self.epoch_generator_state,
            "batches_into_epoch": self.batches_into_epoch,
        })
        (target / TRAINING_STATE_NAME).write_text(json.dumps(
            {"step": self.step, "stage": self.stage_of(max(self.step - 1, 0)), "train_config": self.cfg.to_dict(),
             # what the policy was shown: `openhelix demo` evaluates a few-task policy on these tasks
             "data_tasks": list(getattr(self.dataset, "tasks", []))}, indent=2))
        mark_latest(self.out, target.name)
        keep = self.cfg.training.keep_checkpoints
        for old in step_checkpoints(self.out)[:-keep] if keep else []:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        return target

    def resume(self, spec: str) -> None:
        path = resolve_checkpoint(self.out if spec == "auto" else spec)
        if not (path / TRAINING_STATE_NAME).is_file():
            if spec == "auto":
                return
            raise CheckpointError(f"cannot resume: {path} has no {TRAINING_STATE_NAME}")
        self.s1.load_weights(path / SYSTEM1_DIR)
        self.s2.load_weights(path / SYSTEM2_DIR)
        state = read_resume_state(path)
        # checkpoints written before the stream position was saved hold the generator as it was at the
        # checkpoint: resuming from them starts a new epoch, as it did then
        position = ("epoch_generator", "batches_into_epoch") if "batches_into_epoch" in state else ("generator",)
        missing = [key for key in ("optimizer", "torch_rng", "rng", *position) if key not in state]
        if missing:
            raise CheckpointError(f"cannot resume: {path / RESUME_STATE_NAME} lacks {', '.join(missing)}")
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = state["rng"]
        if "batches_into_epoch" in state:
            self.epoch_generator_state = state["epoch_generator"]
            self.batches_into_epoch = int(state["batches_into_epoch"])
        else:
            self.generator.set_state(state["generator"])
            self.batches_into_epoch = 0
        self.step = json.loads((path / TRAINING_STATE_NAME).read_text())["step"]

    # --- main loop ---

    def run(self) -> dict:
        t = self.cfg.training
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        if t.resume:
            self.resume(t.resume)
        total = t.stage1_steps + t.stage2_steps
        if t.tensorboard and self.accelerator.is_main_process:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                self.tb = None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=self.step, desc="train", disable=not (t.progress and
                                                                              self.accelerator.is_main_process))
        metrics_file = open(self.out / "metrics.jsonl", "a") if self.accelerator.is_main_process else None
        self.system1.train()
        self.system2.train()
        history = []
        start = time.time()
        batches = self.batches()
        stage = None
        try:
            while self.step < total:
                new_stage = self.stage_of(self.step)
                if new_stage != stage:
                    if stage is not None and not t.checkpoint_every:
                        self.save()  # end of stage 1
                    stage = new_stage
                    self.set_stage(stage)
                m = self.train_step(next(batches), stage)
                self.step += 1
                m.update(step=self.step, stage=stage, time=round(time.time() - start, 3))
                history.append(m)
                bar.update(1)
                bar.set_postfix(loss=f"{m['total']:.3f}", stage=stage)
                if metrics_file and (self.step % t.log_every == 0 or self.step == total or self.step == 1):
                    metrics_file.write(json.dumps(m) + "\n")
                    metrics_file.flush()
                    if self.tb:
                        for k, v in m.items():
                            if isinstance(v, float):
                                self.tb.add_scalar(k, v, self.step)
                if t.checkpoint_every and self.step % t.checkpoint_every == 0:
                    self.save()
            path = self.save()
        finally:
            bar.close()
            if metrics_file:
                metrics_file.close()
            if self.tb:
                self.tb.close()
        return {"checkpoint": str(path), "steps": self.step, "history": history}


def _collate(samples):
    from .data.sample import collate_samples

    return collate_samples(samples)


def train(cfg: TrainConfig | dict) -> dict:
    return Trainer(cfg).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openhelix-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML training config (see openhelix_training/configs/)")
    parser.add_argument("--output-dir", help="overrides output_dir")
    parser.add_argument("--resume", help="'auto' or a checkpoint directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. training.stage2_steps=500 (repeatable)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config_path = args.config
    if config_path and not Path(config_path).exists():
        packaged = Path(__file__).parent / "configs" / (config_path if config_path.endswith(".yaml") else config_path + ".yaml")
        if packaged.exists():
            config_path = str(packaged)
    try:
        cfg = load_train_config(config_path, args.set)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"openhelix-train: bad config: {exc}", file=sys.stderr)
        return 2
    if args.output_dir:
        cfg = dataclasses.replace(cfg, output_dir=args.output_dir)
    if args.resume:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, resume=args.resume))
    result = train(cfg)
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({"checkpoint": result["checkpoint"], "steps": result["steps"],
                      "final_loss": last.get("total")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
