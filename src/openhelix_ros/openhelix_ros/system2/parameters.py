"""The system2 node's parameters: name, default, description, limits (``ros2 param describe`` shows them).

config/ sets them, the launch arguments of common/graphs.py override them, and system2/node.py
declares them and hands the values to system2/core.py."""

from __future__ import annotations

from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.common.supervision import worker_deadline_parameter
from openhelix_ros.common.timing import CLOCK_MODES
from openhelix_ros.system2.core import (
    CLIP_TEXT_SYSTEM2_CONFIGS,
    MAX_INSTRUCTION_CHARS,
    OPENHELIX_SYSTEM2_CONFIGS,
    SYSTEM2_CONFIGS,
)

PARAMETERS = (
    ParameterSpec("model", "tiny", "System 2 configuration: "
                  f"{' | '.join(SYSTEM2_CONFIGS + OPENHELIX_SYSTEM2_CONFIGS + CLIP_TEXT_SYSTEM2_CONFIGS)} (ignored when "
                  "'checkpoint' is set).", read_only=True),
    ParameterSpec("checkpoint", "", "Checkpoint directory (model, training checkpoint or run directory); "
                  "overrides 'model'.", read_only=True),
    ParameterSpec("model_path", "", "Local llava-hf directory for the llava-1.5-7b configuration; LLaVA's "
                  "tokenizer directory for openhelix-7b; a local transformers CLIP directory for clip-text.",
                  read_only=True),
    ParameterSpec("device", "cpu", "Torch device for inference (cpu, cuda, cuda:1, ...).", read_only=True),
    ParameterSpec("rate", 0.0, "realtime: latents per second on the newest image; 0 = as fast as possible.",
                  read_only=True, value_range=(0.0, 1000.0)),
    ParameterSpec("clock_mode", "realtime", f"{' | '.join(CLOCK_MODES)} (lockstep uses sim time from /clock).",
                  read_only=True),
    ParameterSpec("latent_period_steps", 0, "lockstep: encode the images of steps 0, N, 2N, ... (Asy(N)); "
                  "0 = every step.", read_only=True, value_range=(0, 100000)),
    ParameterSpec("control_rate", 30.0, "Env steps per second of sim time (step = round(stamp * rate)).",
                  read_only=True, value_range=(1.0, 10000.0)),
    ParameterSpec("seed", 0, "Seed set before every encoding (stochastic variants stay reproducible).",
                  read_only=True),
    ParameterSpec("max_instruction_chars", MAX_INSTRUCTION_CHARS, "Longest instruction (characters) System 2 "
                  "accepts; a longer one is refused before tokenisation (the model also bounds its tokens).",
                  read_only=True, value_range=(1, 100000)),
    ParameterSpec("torch_threads", 0, "Intra-op threads for torch; 0 = torch's default. On a shared CPU, "
                  "fewer threads per node avoid oversubscription.", read_only=True, value_range=(0, 256)),
    # A 7B model on a CPU takes tens of seconds per latent: the bound is generous.
    worker_deadline_parameter(300.0),
)

