"""The ``openhelix`` command: one verb per job (demo, eval, collect, teleop, train, bench, compare, reproduce,
up, view, say, latent-probe, import-checkpoint, info).

Each verb lives in its own module under ``openhelix_ros.cli`` exposing ``add_arguments(parser)``
and ``run(args) -> int`` (or ``run_argv(argv) -> int`` when another tool parses the arguments); modules are imported only when their verb runs, so ``openhelix --help``
stays fast and does not load torch or rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from openhelix_ros.common.environment import apply_ros_defaults

# verb -> (module under openhelix_ros.cli, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "info": ("info", "show the ROS 2 / Python environment and check that the interfaces load"),
    "demo": ("demo", "run the whole graph on the embedded simulator, a few evaluation chains, a report"),
    "eval": ("evaluate", "run the CALVIN evaluation protocol through the ROS graph"),
    "collect": ("collect", "record scripted or tele-operated demonstrations into rosbag2 bags for training"),
    "teleop": ("teleop", "drive the arm of a running graph from the keyboard (teleop/twist, teleop/gripper)"),
    "train": ("train", "train System 2 / System 1 offline (delegates to openhelix-train)"),
    "bench": ("bench", "measure simulator, model and graph speed; report under runs/"),
    "compare": ("compare", "train the survey's dual systems (configs/systems/) on the same data and budget, "
                "evaluate each through the graph, one report"),
    "up": ("up", "start a launch file's graph (sim, eval, record, robot) without ros2 launch, until Ctrl-C"),
    "view": ("view", "watch a running graph in the browser: cloud, arm, plan, cameras, latent age, rates"),
    "say": ("say", "instruct a running graph: one Instruction on the instruction topic"),
    "reproduce": ("reproduce", "the play-table recipe end to end, resumable (today: System 2's vision pretraining)"),
    "latent-probe": ("latent_probe", "read what the <ACT> latent carries while a block moves (the paper's Figure 5)"),
    "import-checkpoint": ("import_checkpoint", "released 3D Diffuser Actor / OpenHelix weights into this project's "
                          "checkpoint layout, loaded strictly"),
}


def _load(verb: str):
    module_name, _ = VERBS[verb]
    try:
        return importlib.import_module(f"openhelix_ros.cli.{module_name}")
    except ModuleNotFoundError as error:
        if error.name == f"openhelix_ros.cli.{module_name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openhelix",
        description="OpenHelix-ROS: a dual-system VLA stack (System 2 MLLM + System 1 3D diffusion "
                    "policy) on ROS 2.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"openhelix: unknown verb {argv[0]!r}; choose from {', '.join(VERBS)}",
                  file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    verb, rest = argv[0], argv[1:]
    module = _load(verb)
    if module is None:
        print(f"openhelix {verb}: not available in this version of OpenHelix-ROS yet "
              f"(see the open issues); nothing was run.", file=sys.stderr)
        return 2
    apply_ros_defaults()
    if hasattr(module, "run_argv"):  # a verb that hands its arguments to another tool unparsed
        return int(module.run_argv(rest) or 0)
    verb_parser = argparse.ArgumentParser(prog=f"openhelix {verb}", description=VERBS[verb][1])
    module.add_arguments(verb_parser)
    args = verb_parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
