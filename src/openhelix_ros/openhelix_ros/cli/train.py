"""``openhelix train``: offline training, delegated to ``openhelix-train`` (openhelix_training.train).

Everything after the verb goes to it unchanged, e.g. ``openhelix train --config my.yaml``; for several
GPUs run ``accelerate launch -m openhelix_training.train --config my.yaml`` (see the training README).
"""

from __future__ import annotations


def run_argv(argv: list[str]) -> int:
    """Takes the verb's raw arguments: openhelix-train parses them itself."""
    from openhelix_training.train import main as train_main

    try:
        return int(train_main(list(argv)) or 0)
    except SystemExit as exit_request:  # argparse inside openhelix-train (--help, bad arguments)
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 2)
