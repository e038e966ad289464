"""The bridge's ROS-free core (bridge/core.py) and the expert's (expert/core.py), driven directly on the
real embedded simulator: no ROS, no mocks."""

from __future__ import annotations

import math

import numpy as np
import pybullet as pb
import pytest

from openhelix_ros.arm.safety import WorkspaceBounds
from openhelix_ros.bridge.core import (
    JOINT_NAMES,
    ROBOT_OBS_LABELS,
    SCENE_OBS_LABELS,
    BridgeConfig,
    BridgeCore,
    CheckGate,
    HoldStep,
    LockstepWatchdog,
    Notice,
    Republish,
    TrajectoryFollower,
    euler_to_quaternion,
    quaternion_to_euler,
    validate_trajectory,
    waypoint_to_action,
)
from openhelix_ros.common.conversions import TrajectoryArrays
from openhelix_ros.expert.core import ExpertCore
from openhelix_ros.sim import fuse_point_cloud
from openhelix_ros.sim.protocol import RELEASE_EXECUTE_LEN, calvin_position_bounds, state_for_condition


def trajectory(positions, stamp_ns=0, gripper=None, quaternions=None, period=1 / 30, frame="world"):
    positions = np.atleast_2d(np.asarray(positions, dtype=float))
    n = len(positions)
    quaternions = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)) if quaternions is None else np.atleast_2d(quaternions)
    gripper = np.ones(n) if gripper is None else np.asarray(gripper, dtype=float)
    return TrajectoryArrays(positions=positions, quaternions=quaternions, gripper=gripper, period=period,
                            frame_id=frame, stamp_ns=stamp_ns)


@pytest.fixture(scope="module")
def core():
    bridge = BridgeCore(BridgeConfig(render=False, seed=3))
    yield bridge
    bridge.close()


# ------------------------------------------------------------------------------------------ rotations
@pytest.mark.parametrize("euler", [(math.pi, 0.0, math.pi / 2), (0.3, -0.4, 1.2), (-2.0, 0.5, -3.0)])
def test_euler_convention_is_pybullets(euler):
    ours = euler_to_quaternion(euler)
    theirs = np.array(pb.getQuaternionFromEuler(euler))
    assert np.allclose(ours, theirs, atol=1e-9) or np.allclose(ours, -theirs, atol=1e-9)
    back = quaternion_to_euler(ours)
    assert np.allclose(euler_to_quaternion(back), ours, atol=1e-9) or \
        np.allclose(euler_to_quaternion(back), -ours, atol=1e-9)


def test_waypoint_to_action_gripper_sign_and_nan():
    position, euler, gripper = waypoint_to_action([0.1, 0.0, 0.3], [0, 0, 0, 2.0], 0.0)
    assert np.allclose(position, [0.1, 0.0, 0.3]) and np.allclose(euler, 0.0) and gripper == -1.0
    assert waypoint_to_action([0, 0, 0.3], [0, 0, 0, 1], 0.4)[2] == 1.0
    with pytest.raises(ValueError, match="finite"):
        waypoint_to_action([np.nan, 0, 0], [0, 0, 0, 1], 1.0)


def test_validate_trajectory_names_the_problem():
    bounds = WorkspaceBounds()
    validate_trajectory(trajectory([[0.0, -0.2, 0.3]]), bounds)
    with pytest.raises(ValueError, match=r"waypoint\(s\) \[1\] outside the workspace"):
        validate_trajectory(trajectory([[0.0, -0.2, 0.3], [0.0, -0.2, 3.0]]), bounds)
    with pytest.raises(ValueError, match="NaN"):
        validate_trajectory(trajectory([[0.0, np.nan, 0.3]]), bounds)
    with pytest.raises(ValueError, match="frame 'panda_link0'"):
        validate_trajectory(trajectory([[0.0, -0.2, 0.3]], frame="panda_link0"), bounds)


# ------------------------------------------------------------------------------------------ follower
def test_lockstep_follower_takes_only_plans_for_the_awaited_stamp():
    follower = TrajectoryFollower(waypoints_per_plan=2)
    assert follower.needs_plan() and follower.next_waypoint() is None
    plan = trajectory(np.zeros((5, 3)), stamp_ns=100)
    assert not follower.accept_plan(plan, waiting_stamp_ns=200)
    assert follower.needs_plan()
    assert follower.accept_plan(plan, waiting_stamp_ns=100)
    assert [follower.next_waypoint(), follower.next_waypoint(), follower.next_waypoint()] == [0, 1, None]
    short = trajectory(np.zeros((1, 3)), stamp_ns=300)
    assert follower.accept_plan(short, 300)
    assert follower.next_waypoint() == 0 and follower.needs_plan()


def test_realtime_follower_picks_the_waypoint_due_and_runs_out():
    follower = TrajectoryFollower()
    assert follower.waypoint_due(10**9) is None
    period_ns = 10**9 // 30
    follower.offer(trajectory(np.zeros((3, 3)), stamp_ns=10**9))
    assert follower.waypoint_due(10**9 + 1) == 0
    assert follower.waypoint_due(10**9 + period_ns) == 0  # exactly due: still waypoint 0
    assert follower.waypoint_due(10**9 + period_ns + 10**6) == 1
    assert follower.waypoint_due(10**9 + 3 * period_ns + 10**6) is None  # run out: hold
    assert not follower.offer(trajectory(np.zeros((3, 3)), stamp_ns=10**8))  # older: refused
    assert follower.trajectory.stamp_ns == 10**9


# ------------------------------------------------------------------------------------------ the core
def test_observation_stamps_ticks_and_labels(core):
    first = core.reset(seed=1)
    assert first.step == 0 and first.stamp_ns == 0  # lockstep sim time is step / control_rate
    assert len(ROBOT_OBS_LABELS) == 15 and len(SCENE_OBS_LABELS) == 24 and len(set(SCENE_OBS_LABELS)) == 24
    assert len(JOINT_NAMES) == len(first.joint_positions) == 9
    assert np.allclose(first.joint_positions[7:], first.robot_obs[6] / 2)
    # The TCP quaternion is the robot_obs Euler angles in the simulator's convention.
    assert np.allclose(quaternion_to_euler(first.tcp_quaternion), first.robot_obs[3:6], atol=1e-9)
    # Without a plan there is nothing to execute in lockstep; a hold step advances step and tick by one.
    assert core.lockstep_step() is None
    held = core.step_env(None)
    assert (held.step, held.tick) == (1, first.tick + 1)
    assert held.stamp_ns == round(1e9 / 30) and core.step_for_stamp(held.stamp_ns) == 1
    # A reset starts sim time again at 0 (Asy(N) periods start with the episode); ticks go on.
    again = core.reset(seed=1)
    assert again.step == 0 and again.stamp_ns == 0 and again.tick == held.tick + 1


def test_lockstep_executes_exactly_the_planned_waypoints(core):
    start = core.reset(seed=2)
    target = start.tcp_position + np.array([0.0, 0.05, 0.0])
    plan = trajectory(np.tile(target, (3, 1)), stamp_ns=start.stamp_ns,
                      quaternions=np.tile(start.tcp_quaternion, (3, 1)))
    assert not core.follower.accept_plan(plan, waiting_stamp_ns=start.stamp_ns + 1)
    assert core.follower.accept_plan(plan, waiting_stamp_ns=core.current.stamp_ns)
    moved = core.lockstep_step()
    assert moved is not None and moved.step == 1
    assert core.lockstep_step() is None  # waypoints_per_plan 1: wait for the next plan
    for _ in range(15):
        core.step_env(None)  # hold the last commanded target: the arm converges there and stays
    assert np.linalg.norm(core.current.tcp_position - target) < 0.01


def test_reset_rejects_wrong_lengths_nan_and_impossible_states_and_keeps_the_world(core):
    before = core.reset(seed=4)
    with pytest.raises(ValueError, match="robot_obs must have 15 values"):
        core.reset(robot_obs=[0.0] * 14)
    with pytest.raises(ValueError, match="scene_obs must have 24 values"):
        core.reset(scene_obs=[0.0] * 25)
    with pytest.raises(ValueError, match="NaN"):
        core.reset(scene_obs=[np.nan] * 24)
    robot, scene = state_for_condition({"drawer": "open"}, np.random.default_rng(0))
    scene[2] = -0.5  # the button far outside its range
    with pytest.raises(ValueError, match="button"):
        core.reset(robot_obs=robot, scene_obs=scene)
    assert core.current.tick == before.tick  # nothing happened
    scene[2] = 0.0
    after = core.reset(robot_obs=robot, scene_obs=scene)
    assert np.allclose(after.scene_obs[1], scene[1], atol=1e-6)


def test_check_tasks_unknown_task_and_bad_start_state(core):
    start = core.reset(seed=5)
    with pytest.raises(ValueError, match="unknown task"):
        core.check_tasks(["open_the_pod_bay_doors"], start.stamp_ns, start.robot_obs, start.scene_obs)
    with pytest.raises(ValueError, match="robot_obs must have 15"):
        core.check_tasks(["open_drawer"], start.stamp_ns, [0.0] * 3, start.scene_obs)
    assert core.check_tasks(["open_drawer", "turn_on_led"], start.stamp_ns, start.robot_obs,
                            start.scene_obs) == []


def test_expert_core_completes_a_task_through_the_bridge_core(core):
    """The lockstep contract end to end without ROS: observe, plan stamped with that observation,
    accept, step; the oracle says when the drawer is open."""
    robot, scene = state_for_condition({"drawer": "closed"}, np.random.default_rng(7))
    start = core.reset(robot_obs=robot, scene_obs=scene)
    expert = ExpertCore(control_rate=30.0)
    expert.observe(start.robot_obs, start.scene_obs, start.step, start.stamp_ns)
    assert expert.act() is None  # no task yet
    assert expert.set_instruction("open the drawer", "", 1) == "open_drawer"
    core.begin_subtask("open_drawer")
    for _ in range(300):
        observation = core.current
        expert.observe(observation.robot_obs, observation.scene_obs, observation.step, observation.stamp_ns)
        plan = expert.act()
        assert plan.stamp_ns == observation.stamp_ns
        assert expert.act() is plan  # asked twice for one observation: the same plan
        arrays = trajectory(plan.positions, stamp_ns=plan.stamp_ns, gripper=plan.gripper,
                            quaternions=plan.quaternions)
        validate_trajectory(arrays, core.bounds)
        assert core.follower.accept_plan(arrays, core.current.stamp_ns)
        core.lockstep_step()
        if core.check_tasks(["open_drawer"], start.stamp_ns, start.robot_obs, start.scene_obs):
            break
    else:
        pytest.fail("the expert did not open the drawer in 300 lockstep steps")
    assert core.current.step < 300
    # A start state the bridge no longer knows by its stamp is rebuilt in a probe simulator: same answer.
    assert core.check_tasks(["open_drawer", "close_drawer"], 12345, start.robot_obs, start.scene_obs) \
        == ["open_drawer"]
    # A reset after acting ends the expert's task: it waits for the next instruction.
    fresh = core.reset(seed=8)
    assert expert.observe(fresh.robot_obs, fresh.scene_obs, fresh.step, fresh.stamp_ns)
    assert expert.act() is None


def test_expert_core_rejects_unknown_instructions():
    expert = ExpertCore()
    with pytest.raises(ValueError, match="unknown task"):
        expert.set_instruction("x", "fly_to_the_moon")
    with pytest.raises(ValueError, match="neither a task id nor text"):
        expert.set_instruction("  ", "")
    with pytest.raises(ValueError, match="not one the expert knows"):
        expert.set_instruction("juggle three blocks", "")


def test_dynamic_mode_switch_is_validated(core):
    core.set_dynamic("circle", 0.03)
    assert core.env.config.dynamic == "circle" and core.env.config.dynamic_speed == 0.03
    core.set_dynamic("")
    assert core.env.config.dynamic is None
    with pytest.raises(ValueError, match="dynamic must be empty or one of"):
        core.set_dynamic("sideways")
    with pytest.raises(ValueError, match="unknown task"):
        core.begin_subtask("not_a_task")


def test_rendered_observation_has_images_and_a_world_cloud():
    bridge = BridgeCore(BridgeConfig(render=True, seed=0))
    try:
        observation = bridge.current
        assert observation.rendered
        assert observation.rgb["static"].shape == (200, 200, 3) and observation.rgb["gripper"].shape == (84, 84, 3)
        assert observation.depth["static"].dtype == np.float32
        assert observation.cameras["static"]["intrinsics"].shape == (3, 3)
        xyz, rgb = observation.points()
        assert xyz.shape[1] == 3 and rgb.shape == xyz.shape and len(xyz) > 10000
        assert np.all(np.isfinite(xyz))
        # Most of what the cameras see is the desk and table around the origin, not the far background.
        assert np.median(np.abs(xyz[:, :2])) < 0.8
        assert observation.points() is observation.points()  # fused once
        # The same cloud as the simulator's own fusion (which recomputes every pixel ray each time).
        reference_xyz, reference_rgb = fuse_point_cloud(
            {"rgb_obs": {f"rgb_{n}": observation.rgb[n] for n in ("static", "gripper")},
             "depth_obs": {f"depth_{n}": observation.depth[n] for n in ("static", "gripper")}},
            observation.cameras)
        assert xyz.shape == reference_xyz.shape
        assert np.allclose(xyz, reference_xyz, atol=1e-5) and np.array_equal(rgb, reference_rgb)
        # Each camera's organised cloud: every pixel, the fused cloud's points where it keeps them.
        static_xyz, static_rgb = observation.camera_points("static")
        assert static_xyz.shape == (200, 200, 3) and np.array_equal(static_rgb, observation.rgb["static"])
        near = (observation.depth["static"] < observation.fuser.max_depth).reshape(-1)
        n_static = int(np.count_nonzero(near))
        np.testing.assert_allclose(static_xyz.reshape(-1, 3)[near], xyz[:n_static], atol=1e-5)
        assert observation.camera_points("gripper")[0].shape == (84, 84, 3)
    finally:
        bridge.close()
    unrendered = BridgeCore(BridgeConfig(render=False))
    try:
        assert not unrendered.current.rendered
        with pytest.raises(ValueError, match="does not render"):
            unrendered.current.points()
    finally:
        unrendered.close()


def test_config_is_validated():
    for bad in (dict(clock_mode="fast"), dict(backend="gazebo"), dict(waypoints_per_plan=0),
                dict(dynamic="sideways"), dict(workspace_low=(0, 0, 0), workspace_high=(0, 1, 1))):
        with pytest.raises(ValueError):
            BridgeConfig(**bad).validate()


def test_realtime_core_executes_the_waypoint_due_then_holds():
    now = [5 * 10**9]
    bridge = BridgeCore(BridgeConfig(render=False, clock_mode="realtime"), clock=lambda: now[0])
    try:
        start = bridge.current
        assert start.stamp_ns == now[0]  # realtime stamps come from the clock
        period_ns = round(1e9 / 30)
        targets = start.tcp_position + np.array([[0.0, 0.01, 0.0], [0.0, 0.02, 0.0], [0.0, 0.03, 0.0]])
        bridge.follower.offer(trajectory(targets, stamp_ns=start.stamp_ns,
                                         quaternions=np.tile(start.tcp_quaternion, (3, 1))))
        used = []
        for _ in range(5):
            now[0] += period_ns
            observation, index = bridge.realtime_step()
            assert observation.stamp_ns == now[0]
            used.append(index)
        assert used == [0, 1, 2, None, None]  # then it has run out: hold the last target
        for _ in range(10):
            now[0] += period_ns
            bridge.realtime_step()
        assert np.linalg.norm(bridge.current.tcp_position - targets[-1]) < 0.01
    finally:
        bridge.close()


def test_expert_core_tells_episodes_apart_that_share_a_stamp(core):
    """Lockstep sim time restarts at every reset: an observation is its stamp and its content."""
    first = core.reset(seed=10)
    expert = ExpertCore()
    expert.set_instruction("", "turn_on_led", 1)
    expert.observe(first.robot_obs, first.scene_obs, first.step, first.stamp_ns)
    assert expert.pending and expert.act() is not None and not expert.pending
    second = core.reset(seed=11)
    assert second.stamp_ns == first.stamp_ns and not np.array_equal(second.scene_obs, first.scene_obs)
    assert expert.observe(second.robot_obs, second.scene_obs, second.step, second.stamp_ns)  # a reset
    assert expert.act() is None  # the task belonged to the previous episode
    expert.set_instruction("", "turn_on_led", 2)
    assert expert.pending  # the new episode's first observation waits for its plan
    plan = expert.act()
    # The bridge re-sending the observation it waits on is not a reset, and gets the same plan.
    assert not expert.observe(second.robot_obs.copy(), second.scene_obs.copy(), 0, second.stamp_ns)
    assert not expert.pending and expert.act() is plan


def test_an_arm_outside_the_box_may_be_brought_back_but_not_farther_out():
    # Physics can overshoot a boundary waypoint; System 1 then returns at the speed limit, so its first
    # waypoints are still outside. Refusing them would strand the arm outside for good.
    bounds = WorkspaceBounds()
    above = np.array([0.0, -0.2, bounds.high[2] + 0.02])
    returning = trajectory([above - [0, 0, 0.01], above - [0, 0, 0.02], [0.0, -0.2, 0.4]])
    validate_trajectory(returning, bounds, current_position=above)
    with pytest.raises(ValueError, match="outside the workspace"):
        validate_trajectory(returning, bounds)  # without the current pose: refused as before
    farther = trajectory([above + [0, 0, 0.01]])
    with pytest.raises(ValueError, match=r"waypoint\(s\) \[0\] outside the workspace"):
        validate_trajectory(farther, bounds, current_position=above)


# ----- lockstep waiting ---------------------------------------------------------------------------


def test_watchdog_waits_without_a_timeout_while_nobody_can_answer():
    watchdog = LockstepWatchdog(step_timeout=5.0, resend_after=1.0)
    watchdog.wait(0.0)
    watchdog.instructed(0.0)
    first = watchdog.tick(0.05, policies=0, step=0)
    assert len(first) == 1 and isinstance(first[0], Notice) and "waits for a policy" in first[0].text
    assert all(watchdog.tick(t, 0, 0) == [] for t in (1.0, 10.0, 100.0))  # said once, never holds


def test_watchdog_resends_when_a_policy_appears_then_every_resend_after_until_a_plan():
    watchdog = LockstepWatchdog(step_timeout=100.0, resend_after=1.0, new_policy_grace=0.5)
    watchdog.wait(0.0)
    watchdog.instructed(0.0)
    assert watchdog.tick(0.1, policies=1, step=0) == []  # the newcomer's subscriptions still match
    assert watchdog.tick(0.6, policies=1, step=0) == [Republish()]
    resends = [t for t in np.arange(0.65, 5.0, 0.05) if watchdog.tick(float(t), 1, 0) == [Republish()]]
    assert len(resends) == 4 and all(b - a > 0.99 for a, b in zip(resends, resends[1:], strict=False))
    watchdog.plan_accepted()
    assert watchdog.tick(10.0, 1, 0) == []


def test_watchdog_holds_a_step_only_after_an_instruction_and_step_timeout():
    watchdog = LockstepWatchdog(step_timeout=5.0, resend_after=0.0)
    watchdog.wait(0.0)
    notice = watchdog.tick(0.0, 1, 7)
    assert isinstance(notice[0], Notice) and "no instruction since the reset" in notice[0].text
    assert watchdog.tick(0.6, 1, 7) == [Republish()]  # the policy that appeared at 0.0
    assert watchdog.tick(60.0, 1, 7) == []  # no policy is due to act before an instruction
    watchdog.instructed(60.0)
    assert watchdog.tick(64.0, 1, 7) == []
    hold = watchdog.tick(65.1, 1, 7)
    assert len(hold) == 1 and isinstance(hold[0], HoldStep) and "step 7" in hold[0].reason
    assert not watchdog.waiting
    watchdog.reset()  # a reset forgets the instruction: the new episode waits for its own
    watchdog.wait(70.0)
    assert isinstance(watchdog.tick(80.0, 1, 0)[0], Notice)


def test_plans_for_another_observation_are_counted_with_few_lines():
    watchdog = LockstepWatchdog()
    lines = [watchdog.ignored_plan(1_000_000_000, 2_000_000_000) for _ in range(20000)]
    said = [i + 1 for i, line in enumerate(lines) if line is not None]
    assert said == [1, 10, 100, 1000, 10000, 20000]
    assert lines[0].text == ("lockstep: ignored 1 trajectory(ies) not stamped with the awaited observation "
                             "(last 1.0000 s, awaiting 2.0000 s)")


# ------------------------------------------------------------------------------ the release protocol
def test_release_protocol_executes_20_waypoints_open_loop_clipped_and_counts_plans():
    clip = WorkspaceBounds((-0.3, -0.3, 0.45), (0.3, 0.3, 0.6))
    bridge = BridgeCore(BridgeConfig(render=False, seed=3, release_position_bounds=clip))
    try:
        start = bridge.reset(seed=2)
        assert start.plans == 0
        bridge.set_protocol("release")
        assert bridge.follower.waypoints_per_plan == RELEASE_EXECUTE_LEN == 20
        low = start.tcp_position.copy()
        low[2] = 0.2  # below the clip box's floor
        plan = trajectory(np.tile(low, (25, 1)), stamp_ns=start.stamp_ns,
                          quaternions=np.tile(start.tcp_quaternion, (25, 1)))
        assert bridge.follower.accept_plan(plan, bridge.current.stamp_ns)
        assert bridge.action_for_waypoint(0)[0][2] == pytest.approx(0.45)  # clipped, not rejected
        steps = 0
        while bridge.lockstep_step() is not None:
            steps += 1
        assert steps == 20 and bridge.current.plans == 1  # 20 of the 25, then a new call is due
        bridge.set_protocol("")
        assert bridge.protocol == "calvin" and bridge.follower.waypoints_per_plan == 1
        assert bridge.action_for_waypoint(0)[0][2] == pytest.approx(0.2)  # no clip outside the release protocol
        with pytest.raises(ValueError, match="protocol must be empty or one of calvin, release, got 'paper'"):
            bridge.set_protocol("paper")
        assert bridge.reset(seed=2).plans == 0  # counted per episode
    finally:
        bridge.close()


def test_check_gate_holds_a_step_until_it_is_checked_or_expires():
    gate = CheckGate(timeout=1.0)
    gate.arm()
    assert not gate.hold(10, now=0.0)  # disabled (not the release protocol): step on at once
    gate.enabled = True
    gate.disarm()
    assert not gate.hold(10, now=0.0)  # after a reset, nothing is checked until an instruction
    gate.arm()
    assert gate.hold(10, now=0.0) and gate.holding and gate.held_stamp_ns == 10
    assert not gate.expired(0.5)
    assert gate.checked() and not gate.holding
    assert not gate.checked()  # a check while nothing is held releases nothing
    assert gate.hold(20, now=1.0)
    assert gate.expired(2.5) and not gate.holding and not gate.expired(3.0)


def test_calvin_position_bounds_read_statistics_yaml(tmp_path):
    path = tmp_path / "statistics.yaml"
    path.write_text("act_min_bound: [-0.4, -0.5, 0.3, -3.1, -1.0, -3.1, -1.0]\n"
                    "act_max_bound: [0.4, 0.1, 0.6, 3.1, 1.0, 3.1, 1.0]\n")
    assert calvin_position_bounds(path) == ((-0.4, -0.5, 0.3), (0.4, 0.1, 0.6))
    path.write_text("act_min_bound: [-0.4]\n")
    with pytest.raises(ValueError, match="act_min_bound must list at least 3 finite numbers"):
        calvin_position_bounds(path)
    with pytest.raises(ValueError, match="cannot read CALVIN statistics"):
        calvin_position_bounds(tmp_path / "missing.yaml")
