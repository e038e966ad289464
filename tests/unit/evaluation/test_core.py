"""The evaluator's ROS-free core: CALVIN's protocol as a state machine, driven here by a small
scripted world (no ROS), and the timing statistics."""

from __future__ import annotations

import pytest

from openhelix_ros.evaluation.core import (
    VARIANTS,
    ChainFinished,
    CheckTasks,
    EvaluationConfig,
    EvaluationError,
    EvaluationRun,
    PublishInstruction,
    ResetScene,
    RunFinished,
    TimingCollector,
    describe,
    dynamic_mode,
    initial_scene,
    instruction_for,
    per_position_stats,
    per_task_stats,
)
from openhelix_ros.sim import sample_chains
from openhelix_ros.sim.language import ENRICHED, EVALUATION


class World:
    """A scripted bridge: a task listed in ``steps_needed`` completes that many steps after its
    subtask began; any other task never does. Keeps the step counter CALVIN's way (since reset)."""

    def __init__(self, steps_needed: dict[str, int], default: int | None = None):
        self.steps_needed = steps_needed
        self.default = default
        self.step = 0
        self.instructions: list[PublishInstruction] = []
        self.resets: list[ResetScene] = []
        self.checks = 0

    def needed(self, task: str) -> int | None:
        return self.steps_needed.get(task, self.default)


def drive(run: EvaluationRun, world: World, max_events: int = 100_000) -> list:
    """Play the world against the run until it finishes; returns every command the run issued."""
    now = 0.0
    issued: list = []
    queue = list(run.start(now))
    start_step = 0
    for _ in range(max_events):
        if not queue:
            if run.finished:
                return issued
            # Nothing to do: the world takes a step and publishes the state.
            world.step += 1
            now += 1 / 30
            queue.extend(run.on_scene_state(now, world.step))
            continue
        command = queue.pop(0)
        issued.append(command)
        if isinstance(command, ResetScene):
            world.resets.append(command)
            world.step = 0
            queue.extend(run.on_reset_done(now, True, ("state", 0), step=0))
        elif isinstance(command, PublishInstruction):
            world.instructions.append(command)
            start_step = world.step
        elif isinstance(command, CheckTasks):
            world.checks += 1
            assert command.start_state == ("state", start_step)
            needed = world.needed(command.tasks[0])
            done = needed is not None and world.step - start_step >= needed
            queue.extend(run.on_check_result(now, True, command.tasks if done else [],
                                             ("state", world.step), world.step))
    raise AssertionError("the run did not finish")


def expected_completed(chains, steps_needed, episode_length, default=None) -> list[int]:
    out = []
    for _, tasks in chains:
        count = 0
        for task in tasks:
            needed = steps_needed.get(task, default)
            if needed is None or needed > episode_length:
                break
            count += 1
        out.append(count)
    return out


def test_protocol_matches_the_rule_and_reuses_the_simulator_sampler():
    chains = sample_chains(12, seed=3)
    # Every task a chain may start with succeeds quickly; rotations and pushes never do.
    rule = {task: 4 for _, tasks in chains for task in tasks if not task.startswith(("rotate", "push"))}
    run = EvaluationRun(EvaluationConfig(num_sequences=12, seed=3, episode_length=20))
    world = World(rule)
    commands = drive(run, world)

    assert run.chains == chains
    assert run.status == "completed" and isinstance(commands[-1], RunFinished)
    completed = [r.completed for r in run.records]
    assert completed == expected_completed(chains, rule, 20)
    summary = run.summary()
    assert summary.average_length == pytest.approx(sum(completed) / 12)
    assert summary.success_rates == [pytest.approx(sum(c >= k for c in completed) / 12) for k in range(1, 6)]
    # One reset per chain, with the initial scene sim.evaluate_chains would use.
    assert [r.chain_index for r in world.resets] == list(range(12))
    robot_obs, scene_obs = initial_scene(chains[5][0], 3, 5)
    assert world.resets[5].robot_obs == robot_obs and world.resets[5].scene_obs == scene_obs
    # A chain stops at its first failure; successes took exactly the rule's steps; failures the budget.
    for record in run.records:
        assert len(record.subtasks) == min(record.completed + 1, 5)
        for subtask in record.subtasks:
            assert subtask.steps == (4 if subtask.success else 20)
        if record.completed < 5:
            assert "not completed within 20 steps" in record.failure
            assert record.subtasks[-1].failure == "not completed within 20 steps"
        else:
            assert record.failure is None
    chain_finished = [c.record.index for c in commands if isinstance(c, ChainFinished)]
    assert chain_finished == list(range(12))
    # Standard instructions.
    assert all(i.text == EVALUATION[i.task] for i in world.instructions)


def test_statistics_per_task_and_position():
    chains = sample_chains(8, seed=1)
    rule = {chains[0][1][0]: 2}
    run = EvaluationRun(EvaluationConfig(num_sequences=8, seed=1, episode_length=5))
    drive(run, World(rule))
    tasks = per_task_stats(run.records)
    attempts = sum(len(r.subtasks) for r in run.records)
    assert sum(t["attempts"] for t in tasks.values()) == attempts
    first = tasks[chains[0][1][0]]
    assert first["success_rate"] == 1.0 and first["mean_steps_to_success"] == 2.0
    positions = per_position_stats(run.records)
    assert positions[0]["reached"] == 8
    assert positions[0]["completed"] == sum(r.completed >= 1 for r in run.records)


def test_enriched_instructions_are_paraphrases_fixed_by_the_seed():
    def instructions(seed):
        world = World({}, default=1)
        drive(EvaluationRun(EvaluationConfig(num_sequences=6, variant="enriched", seed=seed, episode_length=3)), world)
        return [(i.task, i.text) for i in world.instructions]

    first, again, other = instructions(7), instructions(7), instructions(8)
    assert first == again
    assert all(text in ENRICHED[task] for task, text in first)
    assert len(first) == 30  # every subtask succeeds: 6 chains x 5
    assert first != other
    assert len({text for _, text in first}) > 10  # really varied, not one phrasing per task
    assert instruction_for("dynamic-left", "open_drawer", 0, 0, 0) == EVALUATION["open_drawer"]


def test_variants_and_bad_goals():
    assert set(VARIANTS) == {"standard", "enriched", "dynamic-left", "dynamic-forward", "dynamic-diagonal",
                             "dynamic-circle"}
    assert dynamic_mode("dynamic-circle") == "circle" and dynamic_mode("enriched") == ""
    assert EvaluationConfig(num_sequences=1, variant="dynamic-left").validate().dynamic == "left"
    assert EvaluationConfig(num_sequences=1, episode_length=0).validate().episode_length == 360
    for bad, words in ((dict(num_sequences=0), "num_sequences"), (dict(num_sequences=1, variant="dynamic-up"),
                       "unknown variant 'dynamic-up'"), (dict(num_sequences=1, episode_length=-3), "episode_length"),
                       (dict(num_sequences=1, run_name="../x"), "run_name"),
                       (dict(num_sequences=1, seed=-1), "seed must be an integer in"),
                       (dict(num_sequences=1, clock_mode="fast"), "clock_mode")):
        with pytest.raises(EvaluationError, match=words):
            EvaluationConfig(**bad).validate()


def test_refusals_fail_the_chain_and_a_silent_bridge_fails_the_run():
    run = EvaluationRun(EvaluationConfig(num_sequences=3, seed=0, episode_length=50, stall_timeout=2.0))
    [reset] = run.start(0.0)
    # Chain 0: the reset fails -> chain counted with 0 completed, next chain's reset follows.
    finished, reset1 = run.on_reset_done(0.1, False, message="bad scene_obs")
    assert isinstance(finished, ChainFinished) and finished.record.failure == "reset_scene failed: bad scene_obs"
    assert reset1.chain_index == 1
    # Chain 1: check_tasks fails.
    [instruction] = run.on_reset_done(0.2, True, "s0", step=0)
    [check] = run.on_scene_state(0.3, 1)
    finished, reset2 = run.on_check_result(0.4, False, message="unknown task")
    assert "check_tasks failed: unknown task" in finished.record.failure
    assert finished.record.subtasks[0].failure == "check_tasks failed: unknown task"
    # Chain 2: the bridge goes silent -> after stall_timeout the whole run fails (no score), and the
    # chain in progress is kept as interrupted, not counted.
    run.on_reset_done(0.5, True, "s0", step=0)
    [check] = run.on_scene_state(0.6, 1)
    assert run.on_tick(2.0) == []
    [done] = run.on_tick(2.7)
    assert isinstance(done, RunFinished) and done.status == "failed" and run.finished
    assert run.status == "failed"
    assert run.failure == ("the bridge stopped answering (or, in lockstep, the policy it waits for): "
                           "no scene_state or check_tasks answer for 2 s")
    assert [r.completed for r in run.records] == [0, 0] and run.interrupted.index == 2
    # A late answer to an abandoned check changes nothing.
    assert run.on_check_result(3.0, True, ["x"], "s", 3) == []
    assert run.fail(3.1, "again") == [] and run.failure.startswith("the bridge stopped answering")


def test_a_bridge_silent_during_a_reset_fails_the_run():
    run = EvaluationRun(EvaluationConfig(num_sequences=2, seed=0, stall_timeout=1.0))
    run.start(0.0)
    [done] = run.on_tick(1.5)
    assert done.status == "failed" and run.failure.endswith(": no answer from reset_scene for 1 s")
    assert run.records == [] and run.on_reset_done(1.6, True, "s0") == []


def test_one_check_in_flight_and_lockstep_counts_the_bridges_steps():
    run = EvaluationRun(EvaluationConfig(num_sequences=1, seed=0, episode_length=10))
    run.start(0.0)
    [instruction] = run.on_reset_done(0.0, True, "start", step=0)
    [check] = run.on_scene_state(0.1, 1)
    # States arriving while the check is out collapse into one follow-up check.
    assert run.on_scene_state(0.2, 2) == [] and run.on_scene_state(0.3, 3) == []
    [follow_up] = run.on_check_result(0.35, True, [], "now", 3)
    assert isinstance(follow_up, CheckTasks) and follow_up.start_state == "start"
    assert run.on_check_result(0.4, True, [], "now", 3) == []  # nothing pending: wait for a state
    # A stale scene_state (step 500 from before the reset) only triggers a check; the answer's own
    # step decides the budget, so the subtask is not failed.
    [check] = run.on_scene_state(0.5, 500)
    assert run.on_check_result(0.6, True, [], "now", 4) == []
    assert run.current_subtask.steps == 4 and run.current_subtask.failure is None
    # Success carries the compared state forward as the next subtask's start.
    [check] = run.on_scene_state(0.7, 6)
    [next_instruction] = run.on_check_result(0.7, True, [instruction.task], "after", 6)
    assert isinstance(next_instruction, PublishInstruction) and next_instruction.subtask_index == 1
    [check] = run.on_scene_state(0.8, 7)
    assert check.start_state == "after"


def test_realtime_counts_scene_state_messages():
    run = EvaluationRun(EvaluationConfig(num_sequences=1, seed=0, episode_length=3, clock_mode="realtime"))
    run.start(0.0)
    run.on_reset_done(0.0, True, "start", step=0)
    for index in range(2):
        run.on_scene_state(0.1 * index, 1000)  # realtime: the step field is not what counts
        assert run.on_check_result(0.1 * index, True, [], "now", 1000) == []
    run.on_scene_state(0.3, 1000)
    finished, done = run.on_check_result(0.3, True, [], "now", 1000)
    assert finished.record.subtasks[0].steps == 3
    assert finished.record.failure.endswith("not completed within 3 steps")


def test_cancel_keeps_finished_chains_and_the_interrupted_one():
    run = EvaluationRun(EvaluationConfig(num_sequences=5, seed=0, episode_length=2))
    run.start(0.0)
    run.on_reset_done(0.0, True, "s", step=0)
    run.on_scene_state(0.1, 1)
    run.on_check_result(0.1, True, [], "s", 1)
    run.on_scene_state(0.2, 2)
    [finished, reset] = run.on_check_result(0.2, True, [], "s", 2)
    assert [c for c in run.cancel(0.3) if isinstance(c, RunFinished)][0].status == "cancelled"
    assert run.finished and run.status == "cancelled"
    assert len(run.records) == 1 and run.interrupted.index == 1
    assert run.on_scene_state(0.4, 3) == [] and run.cancel(0.5) == []


def test_timing_collector_latent_age_and_rates():
    timing = TimingCollector(control_rate=30.0)
    for index in range(5):  # System 2 at 3 Hz, each latent from the observation 10 steps earlier
        timing.on_goal_latent(received=index / 3, sequence=index + 1,
                              observation_stamp_ns=int(index * 10 / 30 * 1e9), inference_time=0.2)
    for step in range(10, 50):  # System 1 plans every step with the latent of the previous period
        latent = step // 10  # sequence of the latent whose observation was step (latent - 1) * 10
        timing.on_trajectory(received=step / 30, stamp_ns=int(step / 30 * 1e9), latent_sequence=latent,
                             inference_time=0.01)
    timing.on_trajectory(received=2.0, stamp_ns=0, latent_sequence=0, inference_time=0.01)
    timing.on_trajectory(received=2.1, stamp_ns=0, latent_sequence=99, inference_time=float("nan"))
    report = timing.to_dict()
    ages = report["latent_age_steps"]
    assert ages["count"] == 40 and ages["min"] == 10 and ages["max"] == 19  # Asy(10): N .. 2N - 1
    assert report["latent_age_s"]["max"] == pytest.approx(19 / 30)
    assert report["trajectories_without_latent"] == 1 and report["trajectories_with_unseen_latent"] == 1
    assert report["system2"]["rate_hz"] == pytest.approx(3.0)
    assert report["system2"]["inference_time_s"]["p50"] == pytest.approx(0.2)
    assert report["system1"]["messages"] == 42 and report["system1"]["inference_time_s"]["count"] == 41
    assert describe([])["mean"] is None


def test_a_collection_runs_its_own_episodes_and_instructions_through_the_same_loop():
    from openhelix_ros.evaluation.core import Episode

    episodes = [Episode({"drawer": "open"}, ["close_drawer", "move_slider_left"], [0.1] * 15, [0.2] * 24, None),
                Episode({"drawer": "closed"}, ["open_drawer"], [0.3] * 15, [0.4] * 24, None)]
    texts = iter(["shut it", "slide left", "pull it"])
    asked = []

    def instruction(chain, position, task):
        asked.append((chain, position, task))
        return next(texts)

    run = EvaluationRun(EvaluationConfig(num_sequences=2, episode_length=20), episodes=episodes,
                        instruction=instruction)
    world = World({"close_drawer": 3, "open_drawer": 5})
    drive(run, world)
    assert [(r.robot_obs, r.scene_obs, r.seed) for r in world.resets] == [([0.1] * 15, [0.2] * 24, None),
                                                                          ([0.3] * 15, [0.4] * 24, None)]
    # Texts are asked for lazily, subtask by subtask, as collect's random draws always were.
    assert asked == [(0, 0, "close_drawer"), (0, 1, "move_slider_left"), (1, 0, "open_drawer")]
    assert [i.text for i in world.instructions] == ["shut it", "slide left", "pull it"]
    assert [r.completed for r in run.records] == [1, 1] and run.chains[1] == ({"drawer": "closed"}, ["open_drawer"])


def test_giving_up_fails_the_subtask_in_progress_and_ends_its_chain():
    run = EvaluationRun(EvaluationConfig(num_sequences=2, episode_length=100))
    assert run.give_up(0.0, "too early") == []  # nothing in progress before the start
    commands = run.start(0.0)
    commands = run.on_reset_done(0.1, True, ("state", 0), step=0)
    assert isinstance(commands[0], PublishInstruction)
    check = run.on_scene_state(0.2, 1)
    commands = run.give_up(0.3, "ended by the operator")
    assert isinstance(commands[0], ChainFinished) and isinstance(commands[1], ResetScene)
    record = run.records[0]
    assert record.completed == 0 and record.subtasks[0].failure == "ended by the operator"
    assert record.failure == f"subtask 1 ({record.tasks[0]}): ended by the operator"
    assert check and run.on_check_result(0.4, True, [], ("state", 1), 1) == []  # the abandoned check is ignored


def test_chains_reset_to_the_backends_own_start_states():
    from openhelix_ros.sim.calvin_states import calvin_state_for_condition

    embedded = EvaluationRun(EvaluationConfig(num_sequences=3, seed=2))
    calvin = EvaluationRun(EvaluationConfig(num_sequences=3, seed=2, backend="calvin"))
    assert embedded.chains == calvin.chains  # the same chains, started where each world starts them
    for index, ((condition, _), episode) in enumerate(zip(calvin.chains, calvin.episodes, strict=True)):
        robot_obs, scene_obs = calvin_state_for_condition(condition)
        assert episode.robot_obs == robot_obs.tolist() and episode.scene_obs == scene_obs.tolist()
        assert embedded.episodes[index].robot_obs == initial_scene(condition, 2, index)[0]
        assert episode.seed == embedded.episodes[index].seed
    with pytest.raises(EvaluationError, match="unknown backend 'gazebo'"):
        EvaluationConfig(num_sequences=1, backend="gazebo").validate()


# ------------------------------------------------------------------------------ the release protocol
def test_protocols_budgets_and_their_checks():
    calvin = EvaluationConfig(num_sequences=1).validate()
    assert (calvin.protocol, calvin.episode_length, calvin.budget_unit) == ("calvin", 360, "env steps")
    release = EvaluationConfig(num_sequences=1, protocol="release").validate()
    assert (release.episode_length, release.budget_unit) == (60, "policy calls")
    assert EvaluationConfig(num_sequences=1, protocol="").validate().protocol == "calvin"
    with pytest.raises(EvaluationError, match="unknown protocol 'paper'; choose one of calvin, release"):
        EvaluationConfig(num_sequences=1, protocol="paper").validate()
    with pytest.raises(EvaluationError, match="release protocol .* needs clock_mode lockstep"):
        EvaluationConfig(num_sequences=1, protocol="release", clock_mode="realtime").validate()
    with pytest.raises(EvaluationError, match="positive number of policy calls"):
        EvaluationConfig(num_sequences=1, protocol="release", episode_length=-1).validate()


def test_release_protocol_counts_policy_calls_not_env_steps():
    """60 calls of up to 20 open-loop waypoints: 1000 env steps are within the budget, the 61st call's
    state is not, even when the task is done there (the released loop never made that call)."""
    run = EvaluationRun(EvaluationConfig(num_sequences=1, seed=0, protocol="release", episode_length=3))
    run.start(0.0)
    [instruction] = run.on_reset_done(0.0, True, "start", step=0, plans=0)
    [check] = run.on_scene_state(0.1, 19)
    # 500 env steps in 2 calls: far past CALVIN's 360, well within 3 calls.
    assert run.on_check_result(0.2, True, [], "now", 500, current_plans=2) == []
    assert run.current_subtask.policy_calls == 2 and run.current_subtask.failure is None
    [check] = run.on_scene_state(0.3, 520)
    [next_instruction] = run.on_check_result(0.3, True, [instruction.task], "done", 520, current_plans=3)
    first = run.current.subtasks[0]
    assert first.success and (first.steps, first.policy_calls) == (520, 3)
    # The next subtask counts its calls from the state it started at (plans 3 there).
    [check] = run.on_scene_state(0.4, 530)
    assert run.on_check_result(0.4, True, [], "now", 530, current_plans=6) == []
    assert run.current_subtask.policy_calls == 3
    [check] = run.on_scene_state(0.5, 531)
    commands = run.on_check_result(0.5, True, [next_instruction.task], "now", 531, current_plans=7)
    second = run.current.subtasks[1] if run.current else run.records[-1].subtasks[1]
    assert not second.success and second.failure == "not completed within 3 policy calls"
    assert second.policy_calls == 3 and any(isinstance(c, ChainFinished) for c in commands)
    stats = per_task_stats(run.records)
    assert stats[instruction.task]["mean_policy_calls_to_success"] == 3.0


def test_a_state_that_came_during_the_successful_check_is_checked_for_the_next_subtask():
    """The bridge steps on as soon as it has answered, so the next state can reach the evaluator before the
    answer does; it must still be checked (a bridge that holds each state until checked waits for it)."""
    run = EvaluationRun(EvaluationConfig(num_sequences=1, seed=0))
    run.start(0.0)
    [instruction] = run.on_reset_done(0.0, True, "start", step=0)
    [check] = run.on_scene_state(0.1, 1)
    assert run.on_scene_state(0.2, 2) == []  # came while the check of step 1 was out
    commands = run.on_check_result(0.3, True, [instruction.task], "done", 1)
    assert [type(c) for c in commands] == [PublishInstruction, CheckTasks]
    assert commands[1].start_state == "done" and commands[1].tasks == [commands[0].task]
