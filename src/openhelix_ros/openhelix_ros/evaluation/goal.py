"""One RunEvaluation goal carried out through the ROS graph, for the evaluator node (evaluation/node.py),
which owns the endpoints: wait for the bridge's services and a complete graph, set the CALVIN-D mode,
then drive ``evaluation.core.EvaluationRun`` (its commands become service calls, instructions and
progress; service answers and scene states come back as its events), and write the report.

Runs in the action's execute callback; answers and messages arrive on the node's other callback group
and reach it only through ``node.events``.
"""

from __future__ import annotations

import math
import queue
import time

from openhelix_msgs.action import RunEvaluation
from openhelix_msgs.msg import Instruction
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import stamp_to_ns
from openhelix_ros.common.node_utils import get_remote_parameters, set_remote_parameter
from openhelix_ros.evaluation.core import (
    ChainFinished,
    EvaluationConfig,
    EvaluationRun,
    PublishInstruction,
    RunFinished,
    TimingCollector,
)
from openhelix_ros.evaluation.core import CheckTasks as CheckCommand
from openhelix_ros.evaluation.core import ResetScene as ResetCommand
from openhelix_ros.evaluation.messages import chain_end_progress_msg, progress_msg
from openhelix_ros.evaluation.readiness import GraphWait, graph_gaps
from openhelix_ros.evaluation.report import VIDEO_DIR, build_results, write_report
from openhelix_ros.evaluation.video import ChainFilm, VideoWriter


class GoalExecution:
    """One goal's run over the evaluator ``node``'s publishers, clients and event queue."""

    def __init__(self, node) -> None:
        self.node = node
        self._request_id = 0  # the call whose answer the run waits for
        self._position_clip: str | None = None  # the bridge's release clip box, as the report names it
        self._protocol_set = False  # whether the bridge took the goal's protocol (and must be cleared after)
        self._videos: list[tuple[int, VideoWriter]] = []  # (chain, writer) of each filmed chain, to close

    def evaluate(self, goal_handle) -> RunEvaluation.Result:
        config = self.node.config_from_goal(goal_handle.request)
        config.run_name = config.run_name or time.strftime("eval-%Y%m%d-%H%M%S")
        started = time.time()
        episodes = f"single-subtask episodes of {', '.join(config.tasks)}" if config.tasks else "chains"
        self.node.get_logger().info(f"evaluation {config.run_name!r}: {config.num_sequences} {episodes}, {config.variant}, "
                               f"{config.protocol} protocol, {config.episode_length} {config.budget_unit} per "
                               f"subtask, seed {config.seed}")
        problem = self._prepare(goal_handle, config)
        if problem:
            return self._abort(goal_handle, problem)
        run = EvaluationRun(config)
        timing = TimingCollector(control_rate=self.node.params["control_rate"])
        with self.node.lock:
            for sequence, observation in self.node.recent_latents.items():
                timing.remember_latent(sequence, observation)
        while not self.node.events.empty():  # nothing from before this run may count
            self.node.events.get_nowait()
        self.node.timing = timing
        try:
            message = self._run(run, goal_handle, started)
        finally:
            self.node.timing = None
            timeout = float(self.node.get_parameter("service_timeout").value)
            for name, needed in (("dynamic", config.dynamic), ("protocol", self._protocol_set)):
                problem = self._set_bridge(name, "", timeout) if needed else None
                if problem:
                    self.node.get_logger().warning(f"could not set the bridge's {name!r} back to '': {problem}")
        return self._finish(run, timing, goal_handle, started, message)

    def _prepare(self, goal_handle, config: EvaluationConfig) -> str | None:
        """The bridge's services, a complete graph and the CALVIN-D mode; what prevents the run, if anything."""
        timeout = float(self.node.get_parameter("service_timeout").value)
        for client in (self.node.reset_client, self.node.check_client):
            if not client.wait_for_service(timeout_sec=timeout):
                return f"bridge service {self._full_name(client)} not available after {timeout:g} s"
        gaps = self._wait_for_graph(goal_handle, float(self.node.get_parameter("graph_timeout").value))
        if gaps:
            self.node.get_logger().warning(f"starting without a complete graph: {'; '.join(gaps)}")
        if config.dynamic:
            problem = self._set_bridge("dynamic", config.dynamic, timeout)
            if problem:
                return f"cannot set the bridge to CALVIN-D {config.dynamic!r}: {problem}"
        # The bridge then checks every state it publishes before stepping on (its CheckGate), as CALVIN's
        # rollout does; a bridge without the parameter (an older or a foreign one) still runs CALVIN's
        # protocol, with checks that may lag the world by a step.
        problem = self._set_bridge("protocol", config.protocol, timeout)
        self._protocol_set = problem is None
        if problem and config.protocol == "release":
            return f"cannot set the bridge to the release protocol: {problem}"
        if problem:
            self.node.get_logger().warning(f"could not set the bridge's 'protocol' to {config.protocol!r} ({problem}): "
                                           "its checks may lag the world by a step")
        if config.protocol == "release":
            values, problem = get_remote_parameters(self.node.parameter_reader, ["release_position_low",
                                                                                 "release_position_high"], timeout)
            if problem:
                return f"cannot read the bridge's release position clip: {problem}"
            low, high = (list(values[name] or []) for name in ("release_position_low", "release_position_high"))
            self._position_clip = f"{low}..{high}" if low else None
            if not low:
                self.node.get_logger().warning("release protocol without a position clip: the bridge has no "
                                               "release_position_low/high (CALVIN's statistics.yaml act bounds)")
        return None

    def _run(self, run: EvaluationRun, goal_handle, started: float) -> str:
        """Drive the core until it finishes: its commands out, events and ticks in. Returns why it ended
        early ("" when it ran to the end)."""
        message = ""
        pending = list(run.start(time.monotonic()))
        while True:
            while pending:
                pending.extend(self._carry_out(pending.pop(0), run, goal_handle, started))
            if run.finished:
                return message
            if goal_handle.is_cancel_requested or self.node.stopping.is_set():
                message = "cancelled by the client" if goal_handle.is_cancel_requested else "node shut down"
                pending.extend(run.cancel(time.monotonic()))
                continue
            try:
                event = self.node.events.get(timeout=0.05)
            except queue.Empty:
                pending.extend(run.on_tick(time.monotonic()))
                if run.status == "failed":
                    # In lockstep a dead policy stops the bridge too (it waits for a plan): say what is gone.
                    gaps = graph_gaps(self.node.graph_counts())
                    if gaps:
                        run.failure += f" (the graph now: {'; '.join(gaps)})"
                continue
            pending.extend(self._dispatch(run, event))

    def _finish(self, run: EvaluationRun, timing: TimingCollector, goal_handle, started: float,
                message: str) -> RunEvaluation.Result:
        """Write the results (partial ones too), end the goal, and return its result."""
        log = self.node.get_logger()
        run_name = run.config.run_name
        summary = run.summary()
        directory = self.node.runs_dir / run_name
        videos = self._close_videos(directory)
        with self.node.lock:  # a subscription callback may still hold the collector it read before
            results = build_results(run, timing, run_name=run_name, started=started, status=run.status,
                                    message=message, parameters=self._recorded_parameters())
        results["videos"] = videos
        failed = run.status == "failed"
        # A failed run reports no score (NaN): its rates would read as a policy that failed every chain.
        result = RunEvaluation.Result(success=not failed,
                                      success_rates=[math.nan] * 5 if failed else [float(r) for r in summary.success_rates],
                                      average_length=math.nan if failed else float(summary.average_length),
                                      num_sequences_done=len(run.records))
        try:
            paths = write_report(results, directory)
            result.results_path = str(paths["results"].parent.resolve())
        except (OSError, ValueError) as error:  # a full disk must not lose the numbers: they go back in the result
            log.error(f"could not write the results to {directory}: {error}")
            result.success, result.message = False, f"ran, but could not write results: {error}"
        where = result.results_path or "(not written)"
        if failed:
            result.message = (f"failed after {len(run.records)} chains: {run.failure}; no score (partial results "
                              f"in {where}, marked incomplete)")
            log.error(f"evaluation {run_name!r} {result.message}")
        else:
            if result.success:
                result.message = f"{run.status}: {len(run.records)} chains, avg. len {summary.average_length:.2f}"
            rates = " ".join(f"{r:.2f}" for r in summary.success_rates)
            log.info(f"evaluation {run_name!r} {run.status}: success rates {rates}, avg. len "
                     f"{summary.average_length:.2f}, results in {where}")
        if run.status == "cancelled" and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success and run.status == "completed":
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _wait_for_graph(self, goal_handle, timeout: float) -> list[str]:
        """Wait (evaluation/readiness.py: GraphWait) for a complete graph; returns the gaps left. A cancel
        or shutdown ends the wait."""
        wait = GraphWait(time.monotonic(), timeout)
        while not goal_handle.is_cancel_requested and not self.node.stopping.is_set():
            step = wait.update(time.monotonic(), graph_gaps(self.node.graph_counts()))
            if step.line:
                self.node.get_logger().info(step.line)
            if step.done:
                return list(step.gaps)
            time.sleep(0.05)
        return []

    def _full_name(self, client) -> str:
        return self.node.resolve_service_name(client.srv_name)

    def _abort(self, goal_handle, message: str) -> RunEvaluation.Result:
        self.node.get_logger().error(f"evaluation not run: {message}")
        goal_handle.abort()
        # Nothing ran: no score (NaN), not a row of zeros.
        return RunEvaluation.Result(success=False, message=message, success_rates=[math.nan] * 5,
                                    average_length=math.nan)

    def _recorded_parameters(self) -> dict:
        recorded = {name: self.node.get_parameter(name).value for name in
                    ("bridge_name", "runs_dir", "control_rate", "latent_period_steps", "service_timeout",
                     "graph_timeout")}
        recorded["position_clip"] = self._position_clip
        return recorded

    # -- commands of the core ------------------------------------------------------------------
    def _carry_out(self, command, run: EvaluationRun, goal_handle, started: float) -> list:
        """Carry out one command; returns follow-up commands (from a call that failed at once)."""
        if isinstance(command, ResetCommand):
            request = ResetScene.Request(robot_obs=command.robot_obs, scene_obs=command.scene_obs,
                                         use_seed=command.seed is not None, seed=command.seed or 0)
            return self._call(self.node.reset_client, request, "reset", run)
        if isinstance(command, CheckCommand):
            request = CheckTasks.Request(tasks=list(command.tasks), start_state=command.start_state)
            return self._call(self.node.check_client, request, "check", run)
        if isinstance(command, PublishInstruction):
            self._film_subtask(run, command)
            message = Instruction(text=command.text, task=command.task, sequence=next(self.node.instruction_sequences))
            message.header.stamp = self.node.get_clock().now().to_msg()
            self.node.instruction_pub.publish(message)
            self.node.progress_pub.publish(progress_msg(run, self.node.wall_clock.now(), time.time() - started,
                                                    command.subtask_index, command.task, command.text))
            return []
        if isinstance(command, ChainFinished):
            record = command.record
            with self.node.lock:
                film, self.node.filming.film = self.node.filming.film, None
            if film is not None:  # closed at the end of the run: the encoder catches up meanwhile
                self._videos.append((record.index, film.finish(record.completed)))
            progress = chain_end_progress_msg(run, record, self.node.wall_clock.now(), time.time() - started)
            self.node.progress_pub.publish(progress)
            goal_handle.publish_feedback(RunEvaluation.Feedback(progress=progress, chain_tasks=list(record.tasks),
                                                                chain_completed=record.completed))
            self.node.get_logger().info(f"chain {record.index + 1}/{run.config.num_sequences}: "
                                   f"{record.completed}/{len(record.tasks)}"
                                   + (f" ({record.failure})" if record.failure else ""))
            return []
        if isinstance(command, RunFinished):
            return []
        raise TypeError(f"unknown command {command!r}")

    def _film_subtask(self, run: EvaluationRun, command: PublishInstruction) -> None:
        """Start the chain's video at its first subtask (for the first ``video_chains`` chains), and caption
        every subtask of a chain being filmed."""
        limit = int(self.node.get_parameter("video_chains").value)
        with self.node.lock:
            if command.subtask_index == 0 and command.chain_index < limit:
                path = self.node.runs_dir / run.config.run_name / VIDEO_DIR / f"chain_{command.chain_index:03d}.mp4"
                self.node.filming.film = ChainFilm(
                    VideoWriter(path, fps=round(self.node.params["control_rate"])), command.chain_index,
                    run.config.num_sequences, run.chains[command.chain_index][1],
                    latent_period_steps=int(self.node.params["latent_period_steps"]),
                    step_ns=1e9 / self.node.params["control_rate"],
                    start_ns=stamp_to_ns(run.start_state.header.stamp) if hasattr(run.start_state, "header") else None,
                    exact_start=self.node.params["clock_mode"] == "lockstep")
            if self.node.filming.film is not None:
                self.node.filming.film.begin_subtask(command.subtask_index, command.task, command.text)

    def _close_videos(self, directory) -> list[dict]:
        """Close every video of the run (the one of an interrupted chain too); what results.json says of them."""
        with self.node.lock:
            film, self.node.filming.film = self.node.filming.film, None
        if film is not None:
            self._videos.append((film.caption.chain, film.writer))
        videos = []
        for chain, writer in self._videos:
            summary = writer.close()
            if not summary.frames and not summary.error:
                summary.error = f"no image arrived on {self.node.resolve_topic_name(graph.STATIC_IMAGE)}"
                self.node.get_logger().warning(f"no video of chain {chain}: {summary.error}")
            elif summary.error:
                self.node.get_logger().error(f"the video of chain {chain} is missing or cut short: {summary.error}")
            elif summary.dropped:
                self.node.get_logger().warning(f"the video of chain {chain} lost {summary.dropped} frames "
                                               "(its encoder fell a whole queue behind)")
            videos.append({"chain": chain, "path": str(summary.path.relative_to(directory)), "frames": summary.frames,
                           "dropped": summary.dropped, "encode_seconds": summary.encode_seconds,
                           "error": summary.error})
        self._videos.clear()
        return videos

    def _call(self, client, request, kind: str, run: EvaluationRun) -> list:
        self._request_id = request_id = next(self.node.request_ids)
        timeout = float(self.node.get_parameter("service_timeout").value)
        if not client.service_is_ready() and not client.wait_for_service(timeout_sec=timeout):
            # No bridge to answer: the run fails (no score). The wait gives a restarting bridge its chance.
            return self._dispatch(run, (kind, request_id, None, f"service {self._full_name(client)} not available"))
        future = client.call_async(request)
        future.add_done_callback(lambda f: self.node.events.put(
            (kind, request_id, f.result() if f.exception() is None else None,
             "" if f.exception() is None else repr(f.exception()))))
        return []

    def _dispatch(self, run: EvaluationRun, event) -> list:
        now = time.monotonic()
        kind = event[0]
        if kind == "scene_state":
            return run.on_scene_state(now, event[1])
        _, request_id, response, error = event
        if request_id != self._request_id:
            return []  # the answer to a call the run already gave up on
        if response is None:
            # No answer at all (the service is gone, or the call broke): the bridge is down and the run
            # cannot go on. An answer that says failure is the bridge refusing one request: that chain fails.
            self.node.get_logger().error(f"{kind} call failed: {error}")
            service = "reset_scene" if kind == "reset" else "check_tasks"
            return run.fail(now, f"{service} call failed: {error}")
        ok, message = bool(response.success), response.message
        if not ok:
            self.node.get_logger().error(f"{kind} answered failure: {message}")
        if kind == "reset":
            state = response.state
            return run.on_reset_done(now, ok, state, message, step=int(state.step), plans=int(state.plans))
        state = response.current_state
        return run.on_check_result(now, ok, list(response.completed), state, int(state.step), message,
                                   current_plans=int(state.plans))

    def _set_bridge(self, name: str, value: str, timeout: float) -> str | None:
        """Set one of the bridge's string parameters (dynamic, protocol); None on success, else what went wrong."""
        return set_remote_parameter(self.node.parameter_client, name, value, timeout)
