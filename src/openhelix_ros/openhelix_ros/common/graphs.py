"""The graphs the launch files start, declared once: which nodes, with which parameter files, which launch
argument reaches which node parameter, which topics a user can remap, which nodes an argument switches.

Three things are built from these declarations and nothing else, so they cannot disagree:

- ``launch/<graph>.launch.py`` (``ros2 launch openhelix sim.launch.py checkpoint:=...``), through
  :mod:`openhelix_ros.common.launching`;
- ``openhelix up <graph> checkpoint:=...`` and the verbs that start a graph (demo, collect), through
  :func:`openhelix_ros.common.processes.start_graph`;
- the tests, which compare the two and read the running nodes' parameters back.

Parameter precedence (why a launch argument always wins): every node reads ``config/graph.yaml`` (values
all nodes share), then ``config/<node>.yaml``, then the graph's overrides. The parameter files put their
values under ``/**``, and the overrides are written under the node's fully qualified name after them, so
rcl applies them last. (rcl applies the sections of all files in the order their node names first
appear; a node-named section in ``config/<node>.yaml`` would have come after a ``/**`` override and
silently beaten it, which is how ``checkpoint:=`` was once ignored.)

ROS-free and import-light: the CLI and the launch files import it without rclpy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SHARED_PARAMETER_FILE = "graph.yaml"
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Argument:
    """A launch argument: its name, default (a string, as ``ros2 launch`` passes it), what it does, the
    type of the node parameters it sets, and its allowed values (empty: any)."""

    name: str
    default: str
    description: str
    type: type = str
    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> Any:
        """The typed value of ``text``; ValueError naming the argument and what it accepts."""
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.name}:={text!r} is not one of {', '.join(self.choices)}")
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(f"{self.name}:={text!r} is not true or false")
            return lowered in TRUE_WORDS
        try:
            return self.type(text)
        except ValueError:
            raise ValueError(f"{self.name}:={text!r} is not a {self.type.__name__}") from None


@dataclass(frozen=True)
class NodeEntry:
    """One node of a graph.

    ``arguments`` maps node parameter -> launch argument; ``derived`` maps node parameter -> (launch
    argument, function of its value) for a parameter that follows from an argument (the workspace box
    from the backend); ``fixed`` holds the values this graph always sets; ``remaps`` maps a topic the
    node uses -> the launch argument naming the topic to use instead; ``when`` = (argument, value)
    starts the node only when that argument has that value.
    """

    executable: str
    arguments: Mapping[str, str] = field(default_factory=dict)
    derived: Mapping[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    remaps: Mapping[str, str] = field(default_factory=dict)
    when: tuple[str, str] | None = None
    package: str = "openhelix_ros"

    @property
    def name(self) -> str:
        return self.executable

    @property
    def parameter_files(self) -> tuple[str, ...]:
        """The files under config/ this node reads, in order."""
        return (SHARED_PARAMETER_FILE, f"{self.name}.yaml")


@dataclass(frozen=True)
class ResolvedNode:
    """A node of a graph with every argument applied: what a process runner needs to start it."""

    executable: str
    parameter_files: tuple[str, ...]
    overrides: dict[str, Any]
    remaps: dict[str, str]

    @property
    def name(self) -> str:
        return self.executable


@dataclass(frozen=True)
class Graph:
    """A graph of nodes and the arguments that configure it (one launch file, one ``openhelix up``)."""

    name: str
    summary: str
    arguments: tuple[Argument, ...]
    nodes: tuple[NodeEntry, ...]

    @property
    def offers_rviz(self) -> bool:
        """Whether ``rviz:=true`` also starts rviz2 with rviz/openhelix.rviz (refused before anything
        starts where rviz2 is missing)."""
        return any(argument.name == RVIZ.name for argument in self.arguments)

    def argument(self, name: str) -> Argument:
        for argument in self.arguments:
            if argument.name == name:
                return argument
        raise KeyError(f"the {self.name} graph has no argument {name!r} "
                       f"(it has: {', '.join(a.name for a in self.arguments)})")

    def values(self, given: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every argument's typed value: the given string, else the default. Unknown names and values
        outside an argument's choices raise ValueError."""
        given = dict(given or {})
        known = {a.name for a in self.arguments}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"the {self.name} graph has no argument {', '.join(unknown)} "
                             f"(it has: {', '.join(sorted(known))})")
        return {a.name: a.parse(str(given.get(a.name, a.default))) for a in self.arguments}

    def resolve(self, given: Mapping[str, str] | None = None,
                extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[ResolvedNode]:
        """The nodes to start for these argument values, with their overrides and remaps.

        ``extra`` adds per-node overrides a verb sets beyond the launch arguments (collect's seed, the
        demo's task list); they win over the arguments. Nodes switched off by ``when`` are left out.
        """
        values = self.values(given)
        extra = dict(extra or {})
        unknown = sorted(set(extra) - {entry.name for entry in self.nodes})
        if unknown:
            raise ValueError(f"the {self.name} graph has no node {', '.join(unknown)}")
        resolved = []
        for entry in self.nodes:
            if entry.when is not None and values[entry.when[0]] != self.argument(entry.when[0]).parse(entry.when[1]):
                continue
            overrides = {parameter: values[argument] for parameter, argument in entry.arguments.items()}
            overrides.update({parameter: derive(values[argument])
                              for parameter, (argument, derive) in entry.derived.items()})
            overrides.update(entry.fixed)
            overrides.update(extra.get(entry.name, {}))
            remaps = {topic: str(values[argument]) for topic, argument in entry.remaps.items()
                      if str(values[argument]) != topic}
            resolved.append(ResolvedNode(entry.executable, entry.parameter_files, overrides, remaps))
        return resolved


# ---------------------------------------------------------------------------------------------------
# The arguments, each described once

BACKEND = Argument("backend", "embedded", "simulator behind the bridge: embedded (PyBullet play table) or calvin "
                   "(needs calvin_env)", choices=("embedded", "calvin"))
CLOCK_MODE = Argument("clock_mode", "lockstep", "lockstep (sim time; the world waits for the policy) or realtime",
                      choices=("lockstep", "realtime"))
LATENT_PERIOD = Argument("latent_period_steps", "10", "Asy(N): System 2 encodes every N env steps; 0 = synchronous",
                         type=int)
SYSTEM2_MODEL = Argument("system2_model", "embedded", "System 2 configuration: tiny, embedded, llava-1.5-7b, "
                         "tiny-openhelix or openhelix-7b (ignored when checkpoint is set)")
SYSTEM1_MODEL = Argument("system1_model", "default", "System 1 configuration: tiny, default, or a 3D Diffuser "
                         "Actor preset (tiny-3dda, 3dda, 3dda-nhist3, openhelix-policy) (ignored when checkpoint "
                         "is set)")
CHECKPOINT = Argument("checkpoint", "", "checkpoint or training run directory for both systems (overrides the "
                      "configurations)")
POLICY = Argument("policy", "dual", "who acts: dual (System 2 + System 1) or expert (the scripted expert, "
                  "privileged state; the plumbing reference)", choices=("dual", "expert"))
RUNS_DIR = Argument("runs_dir", "runs", "where the evaluator writes runs/<name>/")
VIDEO_CHAINS = Argument("video_chains", "10", "how many chains of each run the evaluator films into "
                        "runs/<name>/videos/ (0: none)", type=int)
RVIZ = Argument("rviz", "false", "also start rviz2 with rviz/openhelix.rviz (needs rviz2 installed)", type=bool)
RVIZ_CONFIG = "openhelix.rviz"

_MODELS = {"clock_mode": "clock_mode", "latent_period_steps": "latent_period_steps"}


def _workspace_corner(corner: int) -> Callable[[str], list[float]]:
    def of_backend(backend: str) -> list[float]:
        from openhelix_ros.sim.backends import workspace  # lazy: pybullet, and calvin_env for calvin

        try:
            return [float(v) for v in workspace(backend)[corner]]
        except RuntimeError as error:  # calvin_env missing: refused before anything starts, by name
            raise ValueError(f"backend:={backend}: {error}") from None

    return of_backend


# The backend's own workspace box (sim/backends.py), for every node that checks or clips to it.
BACKEND_WORKSPACE = {"workspace_low": ("backend", _workspace_corner(0)),
                     "workspace_high": ("backend", _workspace_corner(1))}


def _simulated_nodes() -> tuple[NodeEntry, ...]:
    return (
        NodeEntry("calvin_bridge", arguments={"backend": "backend", "clock_mode": "clock_mode"},
                  derived=BACKEND_WORKSPACE),
        NodeEntry("system2", arguments={**_MODELS, "model": "system2_model", "checkpoint": "checkpoint"},
                  when=("policy", "dual")),
        NodeEntry("system1", arguments={**_MODELS, "model": "system1_model", "checkpoint": "checkpoint"},
                  derived=BACKEND_WORKSPACE, when=("policy", "dual")),
        NodeEntry("scripted_expert", arguments={"backend": "backend"}, when=("policy", "expert")),
    )


SIM = Graph(
    name="sim",
    summary="the dual-system graph on a simulated arm: calvin_bridge (embedded play table or calvin_env), "
            "System 2 and System 1",
    arguments=(BACKEND, CLOCK_MODE, LATENT_PERIOD, SYSTEM2_MODEL, SYSTEM1_MODEL, CHECKPOINT, POLICY, RVIZ),
    nodes=_simulated_nodes(),
)

EVAL = Graph(
    name="eval",
    summary="the simulated graph plus the evaluator, whose run_evaluation action runs the CALVIN protocol",
    arguments=(*SIM.arguments, RUNS_DIR, VIDEO_CHAINS),
    nodes=(*_simulated_nodes(),
           NodeEntry("evaluator", arguments={"backend": "backend", "clock_mode": "clock_mode",
                                             "latent_period_steps": "latent_period_steps", "runs_dir": "runs_dir",
                                             "video_chains": "video_chains"})),
)

RECORD = Graph(
    name="record",
    summary="record demonstrations: the bridge, a demonstrator (scripted expert or teleop) and the recorder",
    arguments=(
        BACKEND,
        Argument("output", "", "bag directory to create (empty: rosbag2_<date>-<time> in the working directory)"),
        Argument("policy", "expert", "who demonstrates: expert (scripted, privileged state) or teleop "
                 "(a person)", choices=("expert", "teleop")),
    ),
    nodes=(
        # A demonstration is recorded at every step: the cloud too, though a plan may cover several.
        NodeEntry("calvin_bridge", arguments={"backend": "backend"}, derived=BACKEND_WORKSPACE,
                  fixed={"clock_mode": "lockstep", "publish_points_every_step": True, "step_timeout": 10.0}),
        NodeEntry("scripted_expert", arguments={"backend": "backend"}, fixed={"horizon": 1},
                  when=("policy", "expert")),
        NodeEntry("teleop", derived=BACKEND_WORKSPACE, fixed={"horizon": 1, "clock_mode": "lockstep"},
                  when=("policy", "teleop")),
        NodeEntry("recorder", arguments={"output": "output"}),
    ),
)

# The topics a real cell wires to the graph, each with the launch argument that renames it.
ROBOT_TOPICS = (
    ("image", "camera/static/image_raw", "static RGB camera (sensor_msgs/Image) for System 2"),
    ("points", "points", "world-frame PointCloud2 (xyz + rgb) for System 1"),
    ("joint_states", "joint_states", "the arm's sensor_msgs/JointState (System 1 and arm_interface)"),
    ("ee_pose", "ee_pose", "the arm's end-effector geometry_msgs/PoseStamped in the world frame"),
    ("joint_trajectory", "joint_trajectory", "where the joint trajectory controller listens"),
    ("target_pose", "target_pose", "where a Cartesian controller listens"),
    ("gripper_command", "gripper_command", "where the gripper's forward command controller listens"),
    ("estop", "estop", "std_msgs/Bool: true holds the arm"),
)
_ROBOT_REMAP = {name: topic for name, topic, _ in ROBOT_TOPICS}
ESTOP_WATCH = Argument("estop_watch", "lost", "when arm_interface holds for an estop it can no longer hear: lost "
                       "(its publisher went away), required (also before one exists), off (only while pressed)",
                       choices=("off", "lost", "required"))
ESTOP_TIMEOUT = Argument("estop_timeout", "0.0", "hold when no estop message came for this long (s), for a pendant "
                         "that repeats its state; 0: the latched state alone", type=float)

ROBOT = Graph(
    name="robot",
    summary="the dual-system graph on a physical Franka Panda, in realtime: System 2, System 1, arm_interface",
    arguments=(
        *(Argument(name, topic, text) for name, topic, text in ROBOT_TOPICS),
        SYSTEM2_MODEL, SYSTEM1_MODEL, CHECKPOINT, ESTOP_WATCH, ESTOP_TIMEOUT,
    ),
    nodes=(
        NodeEntry("system2", arguments={"model": "system2_model", "checkpoint": "checkpoint"},
                  fixed={"clock_mode": "realtime"}, remaps={_ROBOT_REMAP["image"]: "image"}),
        NodeEntry("system1", arguments={"model": "system1_model", "checkpoint": "checkpoint"},
                  fixed={"clock_mode": "realtime"},
                  remaps={_ROBOT_REMAP[name]: name for name in ("points", "joint_states", "ee_pose")}),
        NodeEntry("arm_interface", arguments={"estop_watch": "estop_watch", "estop_timeout": "estop_timeout"},
                  remaps={_ROBOT_REMAP[name]: name for name in ("joint_states", "joint_trajectory", "target_pose",
                                                                "gripper_command", "estop")}),
    ),
)

GRAPHS: dict[str, Graph] = {graph.name: graph for graph in (SIM, EVAL, RECORD, ROBOT)}


def get_graph(name: str) -> Graph:
    try:
        return GRAPHS[name]
    except KeyError:
        raise ValueError(f"no graph {name!r}; choose from {', '.join(GRAPHS)}") from None


def rviz_executable() -> str | None:
    """rviz2's executable from the ament index (a ROS 2 install), else from PATH; None when absent."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return shutil.which("rviz2")
    try:
        candidate = Path(get_package_prefix("rviz2")) / "lib" / "rviz2" / "rviz2"
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all (no ROS 2 sourced)
        return shutil.which("rviz2")
    return str(candidate) if candidate.is_file() else shutil.which("rviz2")


def wanted_rviz(graph: Graph, values: Mapping[str, Any]) -> str | None:
    """rviz2's executable when ``rviz:=true`` asks for it, None when it does not; ValueError when it is
    asked for but missing, raised before anything is started (launch files and ``openhelix up`` alike)."""
    if not (graph.offers_rviz and values[RVIZ.name]):
        return None
    executable = rviz_executable()
    if executable is None:
        raise ValueError("rviz:=true, but rviz2 is not installed (no rviz2 package in the ament index, none on "
                         "PATH); install ros-<distro>-rviz2 or leave rviz:=false. Nothing was started.")
    return executable


def parameter_file_values(path: str | Path) -> dict[str, Any]:
    """The parameters a file of config/ sets (its ``/**`` section; every file there has only that one)."""
    content = yaml.safe_load(Path(path).read_text()) or {}
    return dict(content.get("/**", {}).get("ros__parameters", {}))


def parse_assignments(words: list[str]) -> dict[str, str]:
    """``["checkpoint:=runs/x", "backend:=calvin"]`` (the ``ros2 launch`` syntax) -> a dict;
    ValueError naming a word without ``:=``."""
    values = {}
    for word in words:
        name, separator, value = word.partition(":=")
        if not separator or not name:
            raise ValueError(f"{word!r} is not name:=value")
        values[name] = value
    return values
