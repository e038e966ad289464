"""The evaluator node as a real process over DDS, against a stand-in bridge process
(tests/peers/stand_in_bridge.py: a deterministic task rule instead of a simulator), driven by an
action client in this process and by the `openhelix eval` command.

The expected numbers come from the simulator's own chain sampler and the stand-in's rule, computed
here independently of the evaluator: a task completes 3 steps after its subtask began unless it is a
rotation or a push (never) or the refused task (check_tasks answers failure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.processes import Process, Processes

from openhelix_ros.sim import sample_chains
from openhelix_ros.sim.language import ENRICHED, EVALUATION

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402

from openhelix_msgs.action import RunEvaluation  # noqa: E402
from openhelix_msgs.msg import EvaluationProgress  # noqa: E402

SEED = 4
EPISODE = 20
NEVER = ("rotate", "push")
PNGS = ("success_by_position.png", "per_task_success.png", "latent_age.png", "system_timing.png")


def refused_task() -> str:
    """A task the first chains of SEED reach (so the refusal is exercised) that the rule lets succeed."""
    chains = sample_chains(6, SEED)
    for _, tasks in chains:
        for task in tasks[1:]:
            if not task.startswith(NEVER):
                return task
        # a chain whose first task already fails reaches nothing further
    raise AssertionError("no suitable task")


REFUSED = refused_task()


def expected(chains) -> list[tuple[int, str | None]]:
    """(completed, why it stopped) per chain under the stand-in's rule."""
    out = []
    for _, tasks in chains:
        completed, why = 0, None
        for task in tasks:
            if task == REFUSED:
                why = "check_tasks failed: stand-in oracle refuses"
                break
            if task.startswith(NEVER):
                why = f"not completed within {EPISODE} steps"
                break
            completed += 1
        out.append((completed, why))
    return out


def rates(completed: list[int]) -> list[float]:
    return [sum(c >= k for c in completed) / len(completed) for k in range(1, 6)]


def start_evaluator(processes: Processes, *parameters: str, namespace: str = "") -> Process:
    """The evaluator node, once it has logged that it is ready."""
    return processes.node("evaluator", *parameters, namespace=namespace, ready="ready:", timeout=30.0)


class Client:
    """An action client (and a progress listener) in this test process, in its own ROS context."""

    def __init__(self, namespace: str = ""):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("evaluator_test_client", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.action = ActionClient(self.node, RunEvaluation, f"{namespace}/run_evaluation".lstrip("/"))
        self.progress: list[EvaluationProgress] = []
        progress = f"{namespace}/evaluation/progress".lstrip("/")
        self.node.create_subscription(EvaluationProgress, progress, self.progress.append, 100)
        assert self.action.wait_for_server(timeout_sec=30.0), "run_evaluation not available"
        # The progress listener must be matched before a run starts, or its first messages are missed.
        self.spin_until(lambda: self.node.count_publishers(progress) > 0, 20.0)

    def spin_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.05)

    # A hang guard, not a speed check: a loaded CI machine once took 29 s between the last chain and
    # the result (writing the report), so the default leaves room for that.
    def run(self, timeout: float = 120.0, cancel_after: int | None = None, **goal) -> dict:
        feedback: list = []
        future = self.action.send_goal_async(RunEvaluation.Goal(**goal),
                                             feedback_callback=lambda m: feedback.append(m.feedback))
        # Acceptance is immediate in the node; on a loaded 2-core machine the round trip (and the server
        # matching this client's response reader) was measured taking over 15 s, so allow a minute.
        self.spin_until(future.done, 60.0)
        handle = future.result()
        if not handle.accepted:
            return {"accepted": False}
        if cancel_after is not None:
            self.spin_until(lambda: len(feedback) >= cancel_after, timeout)
            cancel = handle.cancel_goal_async()
            self.spin_until(cancel.done, 30)
        result = handle.get_result_async()
        self.spin_until(result.done, timeout)
        return {"accepted": True, "feedback": feedback, "status": result.result().status,
                "result": result.result().result}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evaluator")
    bridge_log = directory / "bridge.jsonl"
    with Processes(directory) as processes:
        processes.peer("stand_in_bridge.py", "--log", str(bridge_log), "--refuse", REFUSED, "--success-steps", "3")
        evaluator = start_evaluator(processes, f"runs_dir:={directory / 'runs'}", "stall_timeout:=5.0")
        client = Client()
        yield {"dir": directory, "runs": directory / "runs", "bridge_log": bridge_log, "client": client,
               "evaluator": evaluator}
        client.close()
        assert evaluator.stop() == 0, evaluator.output()


def bridge_events(path: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == kind]


def test_standard_run_feedback_rates_and_report(graph):
    chains = sample_chains(6, SEED)
    truth = expected(chains)
    completed = [c for c, _ in truth]
    assert 0 < sum(completed) < 30 and any(why and "refuses" in why for _, why in truth)
    before = len(bridge_events(graph["bridge_log"], "instruction"))
    outcome = graph["client"].run(num_sequences=6, variant="standard", episode_length=EPISODE, seed=SEED,
                                  run_name="standard")
    assert outcome["accepted"] and outcome["status"] == GoalStatus.STATUS_SUCCEEDED
    result = outcome["result"]
    assert result.success and result.num_sequences_done == 6
    assert list(result.success_rates) == pytest.approx(rates(completed))
    assert result.average_length == pytest.approx(sum(completed) / 6)
    # One feedback per chain, in order, with that chain's tasks and outcome.
    feedback = outcome["feedback"]
    assert [f.progress.chain_index for f in feedback] == list(range(6))
    assert [list(f.chain_tasks) for f in feedback] == [tasks for _, tasks in chains]
    assert [f.chain_completed for f in feedback] == completed
    assert list(feedback[-1].progress.success_rates) == pytest.approx(rates(completed))
    # The bridge got one instruction per attempted subtask, standard wording, increasing sequence.
    instructions = bridge_events(graph["bridge_log"], "instruction")[before:]
    attempted = [task for (_, tasks), c in zip(chains, completed, strict=True) for task in tasks[:min(c + 1, 5)]]
    assert [i["task"] for i in instructions] == attempted
    assert all(i["text"] == EVALUATION[i["task"]] for i in instructions)
    sequences = [i["sequence"] for i in instructions]
    assert sequences == sorted(set(sequences))
    # Progress on its topic: one per subtask start and per chain end.
    graph["client"].spin_until(lambda: len([p for p in graph["client"].progress if p.run_name == "standard"])
                               >= len(attempted) + 6, 5.0)

    path = Path(result.results_path)
    assert path == (graph["runs"] / "standard").resolve()
    results = json.loads((path / "results.json").read_text())
    assert results["status"] == "completed" and results["variant"] == "standard" and results["seed"] == SEED
    assert [c["completed"] for c in results["chains"]] == completed
    for chain, (_, why) in zip(results["chains"], truth, strict=True):
        assert (chain["failure"] is None) == (why is None)
        if why:
            assert why in chain["failure"]
    assert results["average_length"] == pytest.approx(result.average_length)
    # The stand-in publishes an Asy(10) pair: latent age 10..19 env steps after the first period.
    ages = results["timing"]["latent_age_steps"]
    # How many trajectories fall inside the subtasks depends on the machine's speed (the stand-in
    # publishes at 200 Hz whatever the evaluator does), so only a few are required.
    assert ages["count"] >= 5 and 10 <= ages["p50"] <= 19 and ages["max"] <= 19
    assert results["timing"]["system1"]["rate_hz"] > results["timing"]["system2"]["rate_hz"] > 0
    assert results["timing"]["system2"]["inference_time_s"]["p50"] == pytest.approx(0.3)
    report = (path / "report.md").read_text()
    assert f"| 6 | {100 * rates(completed)[0]:.1f}% |" in report
    for name in PNGS:
        assert (path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (path / name).stat().st_size > 5000


def test_enriched_and_dynamic_variants(graph):
    before = len(graph["bridge_log"].read_text().splitlines())
    outcome = graph["client"].run(num_sequences=3, variant="enriched", episode_length=EPISODE, seed=SEED + 1,
                                  run_name="enriched")
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED
    events = [json.loads(line) for line in graph["bridge_log"].read_text().splitlines()[before:]]
    instructions = [e for e in events if e["event"] == "instruction"]
    assert instructions and all(i["text"] in ENRICHED[i["task"]] for i in instructions)
    assert all(e["dynamic"] == "" for e in events if e["event"] == "reset")

    before = len(graph["bridge_log"].read_text().splitlines())
    outcome = graph["client"].run(num_sequences=2, variant="dynamic-circle", episode_length=EPISODE, seed=SEED,
                                  run_name="dynamic")
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED
    events = [json.loads(line) for line in graph["bridge_log"].read_text().splitlines()[before:]]
    # 'dynamic' set before the first reset, every reset of the run saw it, set back to '' afterwards.
    kinds = [(e["event"], e.get("value", e.get("dynamic"))) for e in events if e["event"] in ("parameter", "reset")]
    assert kinds[0] == ("parameter", "circle") and kinds[-1] == ("parameter", "")
    assert [k for k in kinds[1:-1]] == [("reset", "circle")] * 2
    results = json.loads((graph["runs"] / "dynamic" / "results.json").read_text())
    assert results["config"]["dynamic"] == "circle"


def test_bad_goals_are_rejected_and_the_node_stays_up(graph):
    client = graph["client"]
    assert client.run(num_sequences=0, variant="standard") == {"accepted": False}
    assert client.run(num_sequences=2, variant="dynamic-sideways") == {"accepted": False}
    log = graph["evaluator"].output()
    assert "num_sequences must be between 1" in log and "unknown variant 'dynamic-sideways'" in log
    assert graph["evaluator"].alive
    outcome = client.run(num_sequences=1, variant="standard", episode_length=5, seed=0, run_name="after-bad")
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED


def test_cancel_writes_partial_results(graph):
    outcome = graph["client"].run(num_sequences=60, variant="standard", episode_length=60, seed=9,
                                  run_name="cancelled", cancel_after=2)
    assert outcome["status"] == GoalStatus.STATUS_CANCELED
    result = outcome["result"]
    assert result.success and 2 <= result.num_sequences_done < 60
    results = json.loads((Path(result.results_path) / "results.json").read_text())
    assert results["status"] == "cancelled" and results["message"] == "cancelled by the client"
    assert results["num_sequences_done"] == result.num_sequences_done == len(results["chains"])
    assert all((Path(result.results_path) / name).exists() for name in (*PNGS, "report.md"))


def test_openhelix_eval_command(graph):
    env = dict(os.environ)
    command = [sys.executable, "-m", "openhelix_ros.cli", "eval"]
    done = subprocess.run([*command, "-n", "3", "--episode-length", str(EPISODE), "--seed", str(SEED),
                           "--run-name", "cli"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    completed = [c for c, _ in expected(sample_chains(3, SEED))]
    for index, count in enumerate(completed):
        assert f"chain {index + 1}/3: {count}/5" in done.stdout
    assert f"| 3 | {100 * rates(completed)[0]:.1f}% |" in done.stdout
    assert (graph["runs"] / "cli" / "report.md").exists()
    bad = subprocess.run([*command, "-n", "2", "--variant", "dynamic-up"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert bad.returncode == 2 and "unknown variant 'dynamic-up'" in bad.stderr


def test_missing_bridge_fails_the_goal_with_a_clear_message(tmp_path, processes, peer):
    from diagnostic_msgs.msg import DiagnosticArray

    from openhelix_ros.common.health import WARN
    from openhelix_ros.common.node_utils import DIAGNOSTICS_QOS
    from openhelix_ros.common.processes import wait_for

    reports = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", lambda array: reports.extend(
        status for status in array.status if status.name == "evaluator: node"
        and status.hardware_id == "/lonely/evaluator"), DIAGNOSTICS_QOS)  # not the module's other evaluator
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", "service_timeout:=1.0", namespace="/lonely")
    done = subprocess.run([sys.executable, "-m", "openhelix_ros.cli", "eval", "-n", "1", "--namespace", "lonely"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 1
    assert "bridge service /lonely/reset_scene not available after 1 s" in done.stderr
    assert "| chains |" not in done.stdout  # nothing ran: no score, not a row of zeros
    assert evaluator.alive
    # /diagnostics says so too: idle again, the last run failed, as a warning.

    def evaluation() -> str:
        return next((pair.value for status in reversed(reports) for pair in status.values
                     if pair.key == "evaluation"), "")

    wait_for(peer, lambda: evaluation().startswith("idle; the last"), 15, "the evaluator's report of the run")
    assert "reset_scene not available after 1 s" in evaluation()
    assert reports[-1].level == bytes([WARN]) and "evaluation: idle; the last" in reports[-1].message
    assert evaluator.stop() == 0


def test_interrupting_the_command_or_the_node_keeps_partial_results(tmp_path, processes):
    """Ctrl-C on `openhelix eval` cancels the goal; SIGINT on the evaluator mid-run ends the goal too.
    Both leave results.json with the chains finished so far."""
    processes.peer("stand_in_bridge.py", "--namespace", "/interrupt")
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", namespace="/interrupt")
    cli = processes.command([sys.executable, "-m", "openhelix_ros.cli", "eval", "-n", "200", "--episode-length",
                             "40", "--run-name", "ctrl-c", "--namespace", "interrupt"], label="openhelix-eval")
    line = cli.wait_for_line("chain 2/200", timeout=240)
    cli.send_signal(signal.SIGINT)
    assert cli.wait(timeout=60) == 130, cli.output()
    rest = cli.output().split(line, 1)[1]  # what it printed after Ctrl-C
    assert "cancelling" in rest and "| chains |" in rest
    results = json.loads((tmp_path / "ctrl-c" / "results.json").read_text())
    assert results["status"] == "cancelled" and 2 <= results["num_sequences_done"] < 200

    client = Client("/interrupt")
    try:
        feedback: list = []
        future = client.action.send_goal_async(
            RunEvaluation.Goal(num_sequences=200, episode_length=40, run_name="sigint"),
            feedback_callback=lambda m: feedback.append(m))
        client.spin_until(lambda: len(feedback) >= 1, 30.0)
        evaluator.send_signal(signal.SIGINT)
        result = future.result().get_result_async()
        client.spin_until(result.done, 30.0)
        assert result.result().status == GoalStatus.STATUS_ABORTED
    finally:
        client.close()
    assert evaluator.wait(timeout=30) == 0
    results = json.loads((tmp_path / "sigint" / "results.json").read_text())
    assert results["status"] == "cancelled" and results["message"] == "node shut down"
    assert results["num_sequences_done"] >= 1


def test_a_rendered_evaluation_films_its_chains_with_the_plan_projected(tmp_path, processes):
    """With a rendering bridge the evaluator writes an MP4 of each filmed chain: a frame a step, the
    scripted expert's plan drawn in gripper colours, the outcome held at the end, linked from report.md."""
    import imageio_ffmpeg
    import numpy as np

    from openhelix_ros.evaluation.video import BAR, OPEN, ChainFilm

    namespace = "/filmed"
    processes.node("calvin_bridge", "render:=true", "clock_mode:=lockstep", namespace=namespace)
    processes.node("scripted_expert", namespace=namespace)
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", "service_timeout:=30.0", "video_chains:=1",
                                namespace=namespace)
    client = Client(namespace)
    try:
        outcome = client.run(timeout=240.0, num_sequences=2, episode_length=120, seed=0, run_name="filmed",
                             tasks=["open_drawer"])
    finally:
        client.close()
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED, evaluator.output()
    results = json.loads((tmp_path / "filmed" / "results.json").read_text())
    assert len(results["videos"]) == 1, results["videos"]  # video_chains:=1: the first chain only
    video = results["videos"][0]
    assert video["chain"] == 0 and video["error"] == "" and video["path"] == "videos/chain_000.mp4", video
    steps = results["chains"][0]["subtasks"][0]["steps"]
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "filmed" / video["path"]))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    # A frame a step (best effort: a few may be lost under load), then the held outcome.
    assert len(frames) == video["frames"] and video["frames"] >= steps * 0.8 + ChainFilm.HOLD_FRAMES, (video, steps)
    assert meta["size"] == (400, 480)
    green = [(np.abs(f[BAR:-BAR].astype(int) - OPEN).sum(axis=2) < 40).sum() for f in frames[5:-ChainFilm.HOLD_FRAMES]]
    assert max(green) > 10, "no plan drawn in any frame"
    report = (tmp_path / "filmed" / "report.md").read_text()
    assert "## Videos" in report and "[videos/chain_000.mp4](videos/chain_000.mp4)" in report


def test_real_bridge_and_scripted_expert(tmp_path, processes):
    """The whole evaluation path on the embedded simulator: the real bridge (lockstep, no rendering) and
    the scripted expert as the policy. Chain 0 of seed 0 is one the expert completes."""
    namespace = "/embedded"
    bridge = processes.node("calvin_bridge", "render:=false", "clock_mode:=lockstep", namespace=namespace)
    processes.node("scripted_expert", namespace=namespace)
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", "service_timeout:=30.0", namespace=namespace)
    client = Client(namespace)
    try:
        # Five subtasks of about 100 lockstep steps each: a minute on a quiet machine, more under load.
        outcome = client.run(timeout=240.0, num_sequences=1, variant="standard", seed=0, run_name="embedded")
    finally:
        client.close()
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED, evaluator.output()
    results = json.loads((tmp_path / "embedded" / "results.json").read_text())
    chain = results["chains"][0]
    assert chain["tasks"] == sample_chains(1, 0)[0][1]
    assert chain["completed"] == 5, chain
    # Every subtask took real simulator steps, well inside CALVIN's budget.
    assert all(0 < s["steps"] < 360 for s in chain["subtasks"])
    assert results["timing"]["trajectories_without_latent"] > 0  # the expert uses no latent
    # The evaluator set the bridge to CALVIN's protocol for the goal (every state checked before the
    # next step) and cleared it afterwards.
    log = bridge.output()
    assert "protocol calvin: up to 1 waypoints per plan, no position clip, every state checked" in log
    assert "protocol cleared: up to 1 waypoints per plan, no position clip\n" in log


def test_release_protocol_on_the_real_bridge_counts_policy_calls_of_open_loop_waypoints(tmp_path, processes):
    """The released OpenHelix / 3D Diffuser Actor loop through the graph: the evaluator switches the real
    bridge to ``protocol: release`` for the goal (20 waypoints of each plan open-loop, the oracle after
    every step, positions clipped to the box it was given) and back afterwards; the budget counts the
    expert's plans, and the report names protocol, budget and clip.

    5 calls of the expert's 20-waypoint plans cannot open the drawer: the subtask must end after exactly
    100 env steps, which holds only if every call ran all 20 waypoints and the oracle saw every state up
    to the last (a bridge racing ahead of the checks would leave an earlier state as the last one)."""
    namespace = "/release"
    bridge = processes.node("calvin_bridge", "render:=false", "clock_mode:=lockstep",
                            "release_position_low:=[-0.6, -0.6, -0.16]", "release_position_high:=[0.6, 0.36, 0.65]",
                            namespace=namespace)
    processes.node("scripted_expert", "horizon:=20", namespace=namespace)
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", "service_timeout:=30.0", namespace=namespace)
    client = Client(namespace)
    try:
        outcome = client.run(timeout=240.0, num_sequences=2, variant="standard", seed=0, run_name="release",
                             protocol="release", tasks=["open_drawer"], episode_length=5)
    finally:
        client.close()
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED, evaluator.output()
    results = json.loads((tmp_path / "release" / "results.json").read_text())
    assert results["protocol"] == "release"
    assert results["budget"] == {"per_subtask": 5, "unit": "policy calls"}
    assert results["config"]["position_clip"] == "[-0.6, -0.6, -0.16]..[0.6, 0.36, 0.65]"
    for chain in results["chains"]:
        [subtask] = chain["subtasks"]
        assert subtask["failure"] == "not completed within 5 policy calls", subtask
        assert (subtask["steps"], subtask["policy_calls"]) == (100, 5), subtask
    report = (tmp_path / "release" / "report.md").read_text()
    assert "Budget: **5 policy calls per subtask** (release protocol; positions clipped to" in report
    # The bridge was put back to its own protocol for whoever evaluates next.
    bridge_log = bridge.output()
    assert "protocol release: up to 20 waypoints per plan, positions clipped to" in bridge_log
    assert "protocol cleared: up to 1 waypoints per plan, no position clip\n" in bridge_log


def test_bad_parameter_stops_the_node_with_one_clear_line():
    done = subprocess.run([sys.executable, "-m", "openhelix_ros.evaluation.node", "--ros-args", "-p",
                           "clock_mode:=warp"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 2
    assert "[FATAL] cannot start: clock_mode must be one of lockstep, realtime, got 'warp'" in done.stderr


def test_first_instruction_waits_for_a_policy(tmp_path, processes):
    """A goal sent while the policy is still loading waits for it rather than instructing nobody."""
    log, trigger = tmp_path / "bridge.jsonl", tmp_path / "policy-loaded"
    processes.peer("stand_in_bridge.py", "--namespace", "/late", "--policy-when", str(trigger), "--log", str(log),
                   "--refuse", REFUSED)
    start_evaluator(processes, f"runs_dir:={tmp_path}", namespace="/late")
    client = Client("/late")
    try:
        future = client.action.send_goal_async(RunEvaluation.Goal(num_sequences=1, episode_length=EPISODE,
                                                                  seed=SEED, run_name="late"))
        client.spin_until(future.done, 30)
        waited_until = time.monotonic() + 1.5
        client.spin_until(lambda: time.monotonic() > waited_until, 5.0)
        assert bridge_events(log, "instruction") == [] and bridge_events(log, "reset") == []
        trigger.touch()
        result = future.result().get_result_async()
        client.spin_until(result.done, 40.0)
    finally:
        client.close()
    assert result.result().status == GoalStatus.STATUS_SUCCEEDED
    [policy_up] = bridge_events(log, "policy_up")
    assert policy_up["time"] < bridge_events(log, "instruction")[0]["time"]
    assert result.result().result.average_length == expected(sample_chains(1, SEED))[0][0]


def test_openhelix_eval_tasks_runs_single_task_episodes_and_the_next_goal_gets_chains(graph):
    command = [sys.executable, "-m", "openhelix_ros.cli", "eval"]
    done = subprocess.run([*command, "-n", "4", "--tasks", "open_drawer,turn_on_led", "--episode-length",
                           str(EPISODE), "--run-name", "cli-tasks"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((graph["runs"] / "cli-tasks" / "results.json").read_text())
    assert [chain["tasks"] for chain in results["chains"]] == [["open_drawer"], ["turn_on_led"]] * 2
    # The tasks travel in the goal: the next goal, without any, gets CALVIN's chains of five.
    client = graph["client"]
    outcome = client.run(num_sequences=1, episode_length=EPISODE, seed=SEED, run_name="after-tasks")
    assert outcome["status"] == GoalStatus.STATUS_SUCCEEDED
    after = json.loads((graph["runs"] / "after-tasks" / "results.json").read_text())
    assert len(after["chains"][0]["tasks"]) == 5
    bad = subprocess.run([*command, "-n", "1", "--tasks", "open_everything"], capture_output=True, text=True,
                         timeout=30, env=dict(os.environ))
    assert bad.returncode == 2 and "unknown task" in bad.stderr


def test_a_bridge_that_dies_mid_run_fails_the_run_loudly_with_no_score(tmp_path, processes):
    """Killed mid-run, the bridge answers nothing: the run ends as failed (exit 1), the chains done so far
    are kept in results.json marked incomplete, and no success rate or average length is reported."""
    bridge = processes.peer("stand_in_bridge.py", "--namespace", "/doomed")
    evaluator = start_evaluator(processes, f"runs_dir:={tmp_path}", "stall_timeout:=3.0", namespace="/doomed")
    cli = processes.command([sys.executable, "-m", "openhelix_ros.cli", "eval", "-n", "200", "--episode-length",
                             "40", "--run-name", "dead", "--namespace", "doomed"], label="openhelix-eval")
    cli.wait_for_line("chain 2/200", timeout=240)
    bridge.send_signal(signal.SIGKILL)
    assert cli.wait(timeout=90) == 1, cli.output()
    output = cli.output()
    assert "openhelix eval: evaluation failed: failed after" in output and "no score" in output
    assert "| chains |" not in output  # no rates table for a failed run
    results = json.loads((tmp_path / "dead" / "results.json").read_text())
    assert results["status"] == "failed" and results["incomplete"] is True
    assert results["success_rates"] is None and results["average_length"] is None
    assert results["failure"] and 2 <= results["num_sequences_done"] < 200
    assert "**No score: the run failed**" in (tmp_path / "dead" / "report.md").read_text()
    assert evaluator.alive  # the evaluator itself stays up for the next goal
