"""The survey's dual systems as named configurations of this stack (configs/systems/<name>.yaml).

A system file fixes every axis along which the OpenHelix paper's Table 1 sets the systems apart: how
System 2 is trained (mode) and forms its latent, which System 1 reads it and whether that policy starts
pre-trained, the training-time latent delay, and how often the slow system runs. ``openhelix compare``
trains each named system on the same data with the same budget and seeds and evaluates it through the
graph; :meth:`SystemConfig.train_config` is the one place a system becomes a training configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .train_config import TrainConfig

SYSTEM_NAMES = ("openhelix", "lcb", "dp-vla", "hirt", "robodual", "dexvla", "helix")
SIZES = ("full", "tiny")
# full-size preset -> the tiny one of the same kind (tests, and comparisons that only check the plumbing)
TINY_PRESETS = {"embedded": "tiny", "llava-1.5-7b": "tiny", "clip-text": "tiny-clip-text", "default": "tiny"}
SYSTEM1_INITS = ("pretrained", "scratch")


def systems_dir() -> Path:
    """configs/systems of the source checkout."""
    return Path(__file__).resolve().parents[3] / "configs" / "systems"


@dataclass(frozen=True)
class SystemConfig:
    """One system file. ``system2``/``system1``: a preset and its overrides (System2Config and
    System1Config fields); ``system1_init``: ``pretrained`` (the policy is first trained alone against
    the frozen System 2, then the dual system from it: "policy from pre-trained") or ``scratch``;
    ``training``: TrainingConfig fields, with ``stage1_fraction`` of the dual steps spent pre-aligning
    System 2 with the policy frozen; ``latent_delay``: frames by which System 2's image lags in training
    (HiRT's asynchronous buffer); ``graph``: the evaluation graph's settings (latent_period_steps,
    temporal_ensemble_plans); ``realtime``: the rates of a realtime run (Helix's)."""

    name: str
    system2: dict
    system1: dict
    system1_init: str = "scratch"
    training: dict = field(default_factory=dict)
    stage1_fraction: float = 0.0
    latent_delay: int = 0
    graph: dict = field(default_factory=dict)
    realtime: dict = field(default_factory=dict)
    source: str = ""  # the file it was read from

    def validate(self) -> None:
        for key, block in (("system2", self.system2), ("system1", self.system1)):
            if set(block) - {"preset", "overrides"} or "preset" not in block:
                raise ValueError(f"system {self.name!r}: {key} takes 'preset' and 'overrides', got {sorted(block)}")
        if self.system1_init not in SYSTEM1_INITS:
            raise ValueError(f"system {self.name!r}: system1_init must be one of {SYSTEM1_INITS}, "
                             f"got {self.system1_init!r}")
        if not 0.0 <= self.stage1_fraction < 1.0:
            raise ValueError(f"system {self.name!r}: stage1_fraction must be in [0, 1), got {self.stage1_fraction}")
        unknown = set(self.graph) - {"latent_period_steps", "temporal_ensemble_plans", "temporal_ensemble_decay"}
        if unknown:
            raise ValueError(f"system {self.name!r}: unknown graph settings {sorted(unknown)}")
        unknown = set(self.realtime) - {"system2_rate", "system1_replan_rate"}
        if unknown:
            raise ValueError(f"system {self.name!r}: unknown realtime settings {sorted(unknown)}")
        if int(self.graph.get("latent_period_steps", 1)) < 1:
            raise ValueError(f"system {self.name!r}: graph.latent_period_steps must be >= 1")

    @property
    def latent_period_steps(self) -> int:
        return int(self.graph.get("latent_period_steps", 10))

    def node_overrides(self, clock_mode: str, control_rate: float = 30.0) -> dict:
        """The system2 and system1 node parameters this system sets in a graph. In lockstep the schedule
        is Asy(latent_period_steps) (a graph argument) and only System 1's ensemble is set here; in
        realtime System 2 runs at ``realtime.system2_rate`` (else control_rate / latent_period_steps, the
        same period in wall time) and System 1 replans at ``realtime.system1_replan_rate`` (else the
        node's default)."""
        system1 = {k: v for k, v in self.graph.items() if k.startswith("temporal_ensemble")}
        system2 = {}
        if clock_mode == "realtime":
            system2["rate"] = float(self.realtime.get("system2_rate", control_rate / self.latent_period_steps))
            if "system1_replan_rate" in self.realtime:
                system1["replan_rate"] = float(self.realtime["system1_replan_rate"])
        elif clock_mode != "lockstep":
            raise ValueError(f"clock_mode must be 'lockstep' or 'realtime', got {clock_mode!r}")
        return {"system2": system2, "system1": system1}

    def sized(self, size: str) -> SystemConfig:
        """The same system with tiny presets (``tiny``) or as written (``full``)."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        if size == "full":
            return self
        s2 = {**self.system2, "preset": TINY_PRESETS.get(self.system2["preset"], self.system2["preset"])}
        s1 = {**self.system1, "preset": TINY_PRESETS.get(self.system1["preset"], self.system1["preset"])}
        return dataclasses.replace(self, system2=s2, system1=s1)

    def train_config(self, output_dir: str | Path, data: dict, steps: int, seed: int = 0,
                     training: dict | None = None, pretrained: str | None = None) -> TrainConfig:
        """The dual system's training: ``steps`` steps in all (``stage1_fraction`` of them pre-aligning),
        on ``data`` (DataConfig fields), from the pre-trained policy ``pretrained`` (a training run, a
        checkpoint or a System 1 directory) when the system starts from one. ``training``: TrainingConfig fields every system of a comparison shares."""
        if self.system1_init == "pretrained":
            if not pretrained:
                raise ValueError(f"system {self.name!r} starts from a pre-trained policy: pass its directory")
            from .checkpoint import SYSTEM1_MODEL_TYPE, find_model_directory

            directory = find_model_directory(pretrained, SYSTEM1_MODEL_TYPE)  # a run, a checkpoint or the model
            if directory is None:
                raise ValueError(f"system {self.name!r}: {pretrained} holds no System 1 to start from")
            pretrained = str(directory)
        stage1 = int(round(steps * self.stage1_fraction))
        values = {
            "output_dir": str(output_dir), "seed": int(seed),
            "data": {**data, "latent_delay": self.latent_delay},
            "system2": {"preset": self.system2["preset"], "overrides": dict(self.system2.get("overrides") or {})},
            "system1": {"preset": self.system1["preset"], "overrides": dict(self.system1.get("overrides") or {}),
                        "pretrained": pretrained if self.system1_init == "pretrained" else None},
            "training": {**self.training, **(training or {}), "stage1_steps": stage1, "stage2_steps": steps - stage1},
        }
        return TrainConfig.from_dict(values)

    def pretrain_config(self, output_dir: str | Path, data: dict, steps: int, seed: int = 0,
                        training: dict | None = None) -> TrainConfig:
        """Training the policy alone against this system's System 2, frozen (its latents cached and
        normalised): what ``system1_init: pretrained`` starts the dual training from."""
        # frozen: the LoRA settings do not matter, so systems that differ only in them share the policy
        s2 = {k: v for k, v in (self.system2.get("overrides") or {}).items() if not k.startswith("lora_")}
        if self.system2["preset"] not in ("clip-text", "tiny-clip-text"):
            s2["mode"] = "frozen"
        values = {
            "output_dir": str(output_dir), "seed": int(seed), "data": {**data, "latent_delay": 0},
            "system2": {"preset": self.system2["preset"], "overrides": s2},
            "system1": {"preset": self.system1["preset"], "overrides": dict(self.system1.get("overrides") or {})},
            "training": {**(training or {}), "stage1_steps": 0, "stage2_steps": int(steps), "cache_latents": True,
                         "latent_normalization": True, "aux_loss": False, "clip_loss": False},
        }
        return TrainConfig.from_dict(values)


def load_system(name_or_path: str | Path) -> SystemConfig:
    """A system by name (configs/systems/<name>.yaml) or from a file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = systems_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown system {str(name_or_path)!r}; choose from {', '.join(available_systems())} "
                             "or give a system file")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a system file is a mapping")
    names = {f.name for f in dataclasses.fields(SystemConfig)} - {"source"}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(names)})")
    system = SystemConfig(**data, source=str(path))
    system.validate()
    return system


def available_systems() -> list[str]:
    return sorted(p.stem for p in systems_dir().glob("*.yaml"))
