"""The calvin_bridge node (and the scripted_expert node) as real processes over DDS.

This test process is the independent peer: it subscribes, publishes trajectories and instructions and
calls the services, with its own rclpy node; the bridge and the expert run in their own processes,
started by the ``processes`` fixture (``python -m <node module> --ros-args -p ...``, the command line
openhelix_ros.common.processes gives `openhelix collect`).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from support.processes import Processes

from openhelix_msgs.msg import EETrajectory, Instruction, SceneState
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import (
    camera_info_from_msg,
    image_to_array,
    pointcloud2_to_points,
    stamp_to_ns,
    trajectory_to_msg,
)
from openhelix_ros.common.messages import message_class
from openhelix_ros.common.node_utils import (
    INSTRUCTION_PUBLISHER_QOS,
    SCENE_STATE_QOS,
    SENSOR_QOS,
    TRAJECTORY_QOS,
)
from openhelix_ros.common.processes import call_service, matched_reader_nodes, wait_for
from openhelix_ros.sim.protocol import state_for_condition

TICK_NS = round(1e9 / 30)


class Watch:
    """Every message of one topic this peer received, newest last."""

    def __init__(self, node: Node, topic: str, msg_type, qos=SENSOR_QOS):
        self.messages: list = []
        self.arrivals: list[float] = []
        node.create_subscription(msg_type, topic, self._on, qos)

    def _on(self, message) -> None:
        self.messages.append(message)
        self.arrivals.append(time.monotonic())

    @property
    def last(self):
        return self.messages[-1] if self.messages else None


def lockstep_trajectory(stamp_ns: int, position, quaternion, gripper=1.0, sequence=1) -> EETrajectory:
    return trajectory_to_msg(np.array([position]), np.array([quaternion]), np.array([gripper]), 1 / 30,
                             stamp=stamp_ns, sequence=sequence)


def spin_for(node: Node, seconds: float, processes) -> None:
    """Let ``seconds`` of traffic arrive (and fail early if a process dies)."""
    end = time.monotonic() + seconds
    wait_for(node, lambda: time.monotonic() > end, seconds + 5, f"{seconds} s", processes)


def robot_pose(state: SceneState) -> tuple[np.ndarray, np.ndarray]:
    from openhelix_ros.bridge.core import euler_to_quaternion

    robot = np.asarray(state.robot_obs)
    return robot[:3], euler_to_quaternion(robot[3:6])


# ---------------------------------------------------------------------------------------------- realtime
def test_realtime_topics_types_stamps_and_rate(peer, processes):
    """An independent subscriber sees every bridge topic with its declared type at a steady rate, and
    all topics of one step carry the same stamp."""
    bridge_topics = [spec for spec in graph.TOPICS if "calvin_bridge" in spec.publishers
                     and spec.name not in (graph.CLOCK, graph.DIAGNOSTICS)]
    watches = {spec.name: Watch(peer, spec.name, message_class(spec.type)) for spec in bridge_topics}
    clock = Watch(peer, graph.CLOCK, Clock)
    diagnostics = Watch(peer, graph.DIAGNOSTICS, DiagnosticArray)  # 1 Hz, checked apart from the sensor rates
    bridge = processes.node("calvin_bridge", "clock_mode:=realtime", "render:=true")
    wait_for(peer, lambda: all(w.messages for w in watches.values()), 40, "every bridge topic", [bridge])
    counts = {name: len(w.messages) for name, w in watches.items()}
    spin_for(peer, 3.0, [bridge])
    rates = {name: (len(w.messages) - counts[name]) / 3.0 for name, w in watches.items()}
    graph_types = dict(peer.get_topic_names_and_types())
    bridge.stop()
    for spec in bridge_topics:
        assert graph_types["/" + spec.name] == [spec.type], spec.name
    # 30 Hz is the aim; rendering two cameras on a shared 2-core CPU gets well under it, never nothing.
    # The per-camera organised clouds are built only while someone listens and come right after the
    # fused cloud: best effort over loopback loses whole ones of them under load (4 Hz seen here for
    # the static camera's), so they must arrive, not keep the rate (lockstep sends them reliably).
    lazy = {graph.STATIC_POINTS, graph.GRIPPER_POINTS}
    assert all(rate >= 3.0 for name, rate in rates.items() if name not in lazy), rates
    assert all(rates[name] > 0 for name in lazy), rates
    assert rates["scene_state"] <= 31.0
    assert not clock.messages, "/clock is lockstep-only"
    reports = [status for array in diagnostics.messages for status in array.status
               if status.name == "calvin_bridge: node"]
    assert reports and any(pair.key == "out scene_state" for pair in reports[-1].values), diagnostics.messages
    # One step, one stamp: the newest scene state's stamp is also on the cloud, images and poses.
    stamps = {name: {stamp_to_ns(m.header.stamp) for m in w.messages} for name, w in watches.items()}
    common = set.intersection(*stamps.values())
    assert len(common) >= 3
    # Content: images of the cameras' sizes, metric depth, intrinsics, a world cloud with colour.
    image = image_to_array(watches[graph.STATIC_IMAGE].last)
    depth = image_to_array(watches[graph.GRIPPER_DEPTH].last)
    assert image.shape == (200, 200, 3) and depth.shape == (84, 84) and depth.dtype == np.float32
    k, width, height = camera_info_from_msg(watches[graph.STATIC_CAMERA_INFO].last)
    assert (width, height) == (200, 200) and k[0, 0] > 0
    cloud = pointcloud2_to_points(watches[graph.POINTS].last)
    assert cloud.frame_id == "world" and cloud.rgb is not None and len(cloud.xyz) > 10000
    # The static camera's pose: where the simulator put it, and the cloud projects back into its image.
    from scipy.spatial.transform import Rotation

    from openhelix_ros.common.conversions import pose_stamped_from_msg
    from openhelix_ros.evaluation.video import Projection
    from openhelix_ros.sim.cameras import static_camera_pose

    position, quaternion, frame, _ = pose_stamped_from_msg(watches[graph.STATIC_CAMERA_POSE].last)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3], camera_to_world[:3, 3] = Rotation.from_quat(quaternion).as_matrix(), position
    assert frame == "world" and np.allclose(camera_to_world, static_camera_pose(), atol=1e-6)
    uv, front = Projection(k, camera_to_world).pixels(cloud.xyz)
    inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < 200) & (uv[:, 1] >= 0) & (uv[:, 1] < 200)
    assert inside.mean() > 0.5, inside.mean()
    _, _, gripper_frame, _ = pose_stamped_from_msg(watches[graph.GRIPPER_CAMERA_POSE].last)
    assert gripper_frame == "world"
    state = watches[graph.SCENE_STATE].last
    assert len(state.robot_obs_labels) == 15 and state.scene_obs_labels[1] == "drawer"
    assert list(watches[graph.JOINT_STATES].last.name)[:1] == ["panda_joint1"]
    pose = watches[graph.EE_POSE].last
    assert np.allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z],
                       state.robot_obs[:3], atol=0.02)


# ---------------------------------------------------------------------------------------------- lockstep
@pytest.fixture(scope="module")
def lockstep_bridge(peer, tmp_path_factory):
    with Processes(tmp_path_factory.mktemp("lockstep")) as processes:
        yield processes.node("calvin_bridge", "clock_mode:=lockstep", "render:=false", "step_timeout:=30.0")


def test_lockstep_waits_for_a_plan_stamped_with_the_observation(peer, lockstep_bridge):
    states = Watch(peer, graph.SCENE_STATE, SceneState, SCENE_STATE_QOS)
    clock = Watch(peer, graph.CLOCK, Clock)
    poses = Watch(peer, graph.EE_POSE, PoseStamped)
    wait_for(peer, lambda: all(peer.count_publishers(t) for t in (graph.SCENE_STATE, graph.CLOCK, graph.EE_POSE)),
             30, "the bridge's publishers", [lockstep_bridge])
    spin_for(peer, 0.3, [lockstep_bridge])  # let the bridge's side of discovery match us too
    publisher = peer.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)
    # With a policy on ee_trajectory appearing, the waiting bridge re-sends its current observation.
    wait_for(peer, lambda: states.messages and clock.messages and poses.messages, 30,
             "the observation the bridge waits on", [lockstep_bridge])
    first = states.last
    stamp = stamp_to_ns(first.header.stamp)
    assert abs(stamp - round(stamp * 30 / 1e9) * 1e9 / 30) <= 1  # sim time: a whole number of ticks
    assert stamp_to_ns(clock.last.clock) == stamp and stamp_to_ns(poses.last.header.stamp) == stamp
    position, quaternion = robot_pose(first)

    # A plan made from another observation is ignored: the world does not move. (The bridge may re-send
    # the observation it waits on, with the same stamp; only a new stamp is a step.)
    def ticks() -> list[int]:
        return sorted({stamp_to_ns(m.header.stamp) for m in states.messages})

    publisher.publish(lockstep_trajectory(stamp + 7 * TICK_NS, position, quaternion))
    spin_for(peer, 3.5, [lockstep_bridge])
    assert ticks() == [stamp]
    # Waiting that long (resend_after 1 s), the bridge published the awaited observation again, and
    # again: a node that starts late (System 2 loading its model) gets it whenever it comes up.
    assert sum(stamp_to_ns(m.header.stamp) == stamp for m in states.messages) >= 3

    # Each plan stamped with the awaited observation advances exactly one step, stamp + 1/30 s.
    for i in range(3):
        current = states.last
        stamp = stamp_to_ns(current.header.stamp)
        count = len(ticks())
        publisher.publish(lockstep_trajectory(stamp, position + [0.0, 0.01 * (i + 1), 0.0], quaternion,
                                              sequence=i + 2))
        wait_for(peer, lambda c=count: len(ticks()) > c, 30, f"step {i + 1}", [lockstep_bridge])
        spin_for(peer, 0.3, [lockstep_bridge])
        assert len(ticks()) == count + 1
        new = states.last
        assert new.step == current.step + 1
        assert abs(stamp_to_ns(new.header.stamp) - (stamp + TICK_NS)) <= 1
        assert stamp_to_ns(clock.last.clock) == stamp_to_ns(new.header.stamp)

    # A NaN trajectory for the awaited observation is dropped with a log line; the node stays up.
    current = states.last
    nan = lockstep_trajectory(stamp_to_ns(current.header.stamp), position, quaternion, sequence=99)
    nan.poses[0].position.x = float("nan")
    count = len(ticks())
    publisher.publish(nan)
    wait_for(peer, lambda: "NaN" in lockstep_bridge.output(), 30, "the bridge to log the NaN trajectory",
             [lockstep_bridge])
    # Out of the workspace: refused too, naming the workspace.
    far = lockstep_trajectory(stamp_to_ns(current.header.stamp), [0.0, 0.0, 5.0], quaternion, sequence=100)
    publisher.publish(far)
    wait_for(peer, lambda: "outside the workspace" in lockstep_bridge.output(), 30, "the out-of-bounds log",
             [lockstep_bridge])
    assert len(ticks()) == count
    # Still alive and still waiting on the same observation: a good plan steps it.
    publisher.publish(lockstep_trajectory(stamp_to_ns(current.header.stamp), position, quaternion, sequence=101))
    wait_for(peer, lambda: len(ticks()) > count, 30, "a step after the bad input", [lockstep_bridge])
    assert states.last.step == current.step + 1
    peer.destroy_publisher(publisher)


def test_services_reset_and_check_tasks_with_bad_input(peer, lockstep_bridge):
    reset = peer.create_client(ResetScene, graph.RESET_SCENE)
    check = peer.create_client(CheckTasks, graph.CHECK_TASKS)
    wait_for(peer, lambda: reset.service_is_ready() and check.service_is_ready(), 30, "the services",
             [lockstep_bridge])
    robot, scene = state_for_condition({"drawer": "open", "lightbulb": 1}, np.random.default_rng(3))

    good = call_service(peer, reset, ResetScene.Request(robot_obs=robot.tolist(), scene_obs=scene.tolist()),
                        20, [lockstep_bridge])
    assert good.success, good.message
    assert good.state.step == 0 and good.state.scene_obs[4] == 1.0
    assert abs(good.state.scene_obs[1] - scene[1]) < 1e-3

    short = call_service(peer, reset, ResetScene.Request(robot_obs=[0.0] * 14), 20, [lockstep_bridge])
    assert not short.success and "robot_obs must have 15 values" in short.message
    nan = call_service(peer, reset, ResetScene.Request(scene_obs=[float("nan")] * 24), 20, [lockstep_bridge])
    assert not nan.success and "NaN" in nan.message
    # The refused resets left the world as it was.
    assert np.allclose(nan.state.scene_obs, good.state.scene_obs)

    seeded = call_service(peer, reset, ResetScene.Request(use_seed=True, seed=11), 20, [lockstep_bridge])
    again = call_service(peer, reset, ResetScene.Request(use_seed=True, seed=11), 20, [lockstep_bridge])
    assert seeded.success and np.allclose(seeded.state.scene_obs, again.state.scene_obs)
    assert stamp_to_ns(again.state.header.stamp) == 0 and again.state.step == 0  # sim time restarts

    unknown = call_service(peer, check, CheckTasks.Request(tasks=["open_drawer", "fly"], start_state=again.state),
                           20, [lockstep_bridge])
    assert not unknown.success and "fly" in unknown.message and list(unknown.completed) == []
    asked = call_service(peer, check, CheckTasks.Request(tasks=["open_drawer", "turn_off_lightbulb"],
                                                         start_state=again.state), 20, [lockstep_bridge])
    assert asked.success and list(asked.completed) == []
    assert stamp_to_ns(asked.current_state.header.stamp) == stamp_to_ns(again.state.header.stamp)
    broken = SceneState()
    broken.header.stamp = again.state.header.stamp
    bad_start = call_service(peer, check, CheckTasks.Request(tasks=["open_drawer"], start_state=broken), 20,
                             [lockstep_bridge])
    assert not bad_start.success and "start_state" in bad_start.message

    # CALVIN-D through the standard parameter service: validated, then applied.
    parameters = peer.create_client(SetParameters, "/calvin_bridge/set_parameters")
    wait_for(peer, parameters.service_is_ready, 20, "set_parameters", [lockstep_bridge])

    def set_dynamic(mode: str):
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=mode)
        return call_service(peer, parameters, SetParameters.Request(parameters=[Parameter(name="dynamic",
                                                                                          value=value)]),
                            20, [lockstep_bridge]).results[0]

    # An instruction naming an unknown task is logged; the node stays up.
    instructions = peer.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
    wait_for(peer, lambda: instructions.get_subscription_count() > 0, 20, "the bridge's instruction subscription",
             [lockstep_bridge])
    instructions.publish(Instruction(text="do a backflip", task="do_a_backflip", sequence=1))
    wait_for(peer, lambda: "do_a_backflip" in lockstep_bridge.output(), 30, "the unknown-task log line",
             [lockstep_bridge])
    peer.destroy_publisher(instructions)

    refused = set_dynamic("sideways")
    assert not refused.successful and "dynamic must be empty or one of" in refused.reason
    assert set_dynamic("circle").successful and set_dynamic("").successful
    assert lockstep_bridge.alive


def test_expert_completes_a_task_through_the_lockstep_bridge(peer, lockstep_bridge, processes):
    """scripted_expert + calvin_bridge, separate processes, lockstep: the expert opens the drawer.

    The scene is reset before the expert starts: an expert that hears the instruction between the
    bridge's earlier state and the reset's (they travel on different topics) takes the reset for the
    end of its task, and CI saw it wait for another instruction."""
    watched = [lockstep_bridge]
    expert = None
    try:
        states = Watch(peer, graph.SCENE_STATE, SceneState, SCENE_STATE_QOS)
        plans = Watch(peer, graph.EE_TRAJECTORY, EETrajectory, TRAJECTORY_QOS)
        instructions = peer.create_publisher(Instruction, graph.INSTRUCTION, INSTRUCTION_PUBLISHER_QOS)
        reset = peer.create_client(ResetScene, graph.RESET_SCENE)
        check = peer.create_client(CheckTasks, graph.CHECK_TASKS)
        wait_for(peer, lambda: reset.service_is_ready() and check.service_is_ready(), 40, "the bridge", watched)
        robot, scene = state_for_condition({"drawer": "closed"}, np.random.default_rng(5))
        start = call_service(peer, reset, ResetScene.Request(robot_obs=robot.tolist(), scene_obs=scene.tolist()),
                             20, watched)
        assert start.success, start.message
        expert = processes.node("scripted_expert")
        watched.append(expert)
        wait_for(peer, lambda: matched_reader_nodes(peer, instructions, graph.INSTRUCTION) >= 2, 40, "the expert",
                 watched)
        instructions.publish(Instruction(text="open the drawer", task="open_drawer", sequence=1))
        completed: list[str] = []
        checked_step = -1
        deadline = time.monotonic() + 50
        while not completed and time.monotonic() < deadline:
            wait_for(peer, lambda c=checked_step: bool(states.messages) and states.last.step > c, 20, "a step",
                     watched)
            checked_step = states.last.step
            answer = call_service(peer, check, CheckTasks.Request(tasks=["open_drawer"], start_state=start.state),
                                  20, watched)
            assert answer.success, answer.message
            completed = list(answer.completed)
            assert checked_step <= 300, "the expert needed more than 300 steps"
        assert completed == ["open_drawer"], f"not done after {checked_step} steps"
        # Every plan was made from an observation the bridge published, and carried no latent. (Plans and
        # scene states travel on different topics: let the states still on their way arrive first.)
        spin_for(peer, 0.5, watched)
        published = {stamp_to_ns(s.header.stamp) for s in states.messages}
        unpublished = [stamp_to_ns(p.header.stamp) for p in plans.messages[-20:]
                       if stamp_to_ns(p.header.stamp) not in published]
        assert plans.messages and not unpublished, \
            f"plans for stamps never published: {unpublished[:5]} (published {sorted(published)[:5]}...)"
        foreign = [(p.sequence, p.latent_sequence, stamp_to_ns(p.header.stamp)) for p in plans.messages
                   if p.latent_sequence != 0]
        assert not foreign, f"plans with a latent (sequence, latent_sequence, stamp): {foreign[:5]}"
    finally:
        if expert is not None:
            expert.stop()


def test_bridge_exits_cleanly_with_a_clear_line_on_bad_parameters(processes):
    bridge = processes.node("calvin_bridge", "clock_mode:=sometimes")
    assert bridge.wait(timeout=30) == 2
    assert "clock_mode must be one of" in bridge.output()


def test_camera_info_and_images_are_unrendered_absent_in_lockstep_without_render(peer, lockstep_bridge):
    """render false: state topics only (no cameras, no cloud), as documented."""
    images = Watch(peer, graph.STATIC_IMAGE, Image)
    infos = Watch(peer, graph.STATIC_CAMERA_INFO, CameraInfo)
    clouds = Watch(peer, graph.POINTS, PointCloud2)
    joints = Watch(peer, graph.JOINT_STATES, JointState)
    reset = peer.create_client(ResetScene, graph.RESET_SCENE)
    wait_for(peer, reset.service_is_ready, 20, "reset_scene", [lockstep_bridge])
    call_service(peer, reset, ResetScene.Request(), 20, [lockstep_bridge])
    wait_for(peer, lambda: joints.messages, 30, "joint_states after a reset", [lockstep_bridge])
    assert not images.messages and not infos.messages and not clouds.messages


def test_lockstep_executes_waypoints_per_plan_from_one_trajectory(peer, processes):
    """waypoints_per_plan 3: one plan for the awaited observation moves the world exactly 3 steps (the
    bridge steps on by itself, between executor turns), then it waits again. In its own namespace, so
    it does not meet the module's other bridge."""
    bridge = processes.node("calvin_bridge", "clock_mode:=lockstep", "render:=false", "waypoints_per_plan:=3",
                            "step_timeout:=30.0", namespace="/multi")
    try:
        states = Watch(peer, "/multi/scene_state", SceneState, SCENE_STATE_QOS)
        wait_for(peer, lambda: peer.count_publishers("/multi/scene_state") > 0, 30, "the bridge", [bridge])
        spin_for(peer, 0.3, [bridge])
        publisher = peer.create_publisher(EETrajectory, "/multi/ee_trajectory", TRAJECTORY_QOS)
        wait_for(peer, lambda: states.messages, 30, "the awaited observation", [bridge])
        awaited = states.last
        position, quaternion = robot_pose(awaited)
        plan = trajectory_to_msg(np.array([position + [0.0, 0.01 * i, 0.0] for i in range(1, 6)]),
                                 np.tile(quaternion, (5, 1)), np.ones(5), 1 / 30,
                                 stamp=stamp_to_ns(awaited.header.stamp), sequence=1)
        publisher.publish(plan)
        wait_for(peer, lambda: states.last.step >= awaited.step + 3, 30, "three steps", [bridge])
        spin_for(peer, 0.5, [bridge])
        assert max(m.step for m in states.messages) == awaited.step + 3  # then it waits for a new plan
        peer.destroy_publisher(publisher)
    finally:
        bridge.stop()


def test_step_timeout_runs_only_after_an_instruction(peer, processes):
    """With a policy on ee_trajectory but no instruction since the reset, nobody is due to act: the bridge
    waits without holding. Once an instruction arrives, step_timeout without a plan holds for a step; a
    reset stops that again. In its own namespace, away from the module's other bridge."""
    bridge = processes.node("calvin_bridge", "clock_mode:=lockstep", "render:=false", "step_timeout:=1.0",
                            "resend_after:=0.0", namespace="/timeout")
    try:
        states = Watch(peer, "/timeout/scene_state", SceneState, SCENE_STATE_QOS)
        policy = peer.create_publisher(EETrajectory, "/timeout/ee_trajectory", TRAJECTORY_QOS)
        instructions = peer.create_publisher(Instruction, "/timeout/instruction", INSTRUCTION_PUBLISHER_QOS)
        reset = peer.create_client(ResetScene, "/timeout/reset_scene")
        wait_for(peer, lambda: states.messages and reset.service_is_ready()
                 and bridge.output().count("waits for a plan; no instruction") >= 1, 30,
                 "the bridge to see the policy and wait", [bridge])
        spin_for(peer, 2.5, [bridge])  # more than twice step_timeout
        assert "holding the pose" not in bridge.output()
        assert {m.step for m in states.messages} == {0}

        instructions.publish(Instruction(text="open the drawer", task="open_drawer", sequence=1))
        wait_for(peer, lambda: "holding the pose" in bridge.output(), 30, "a hold after the instruction", [bridge])
        wait_for(peer, lambda: states.last.step >= 1, 30, "the held step", [bridge])

        call_service(peer, reset, ResetScene.Request(), 30, [bridge])
        holds = bridge.output().count("holding the pose")
        wait_for(peer, lambda: bridge.output().count("waits for a plan; no instruction") >= 2, 30,
                 "the bridge to wait again after the reset", [bridge])
        spin_for(peer, 2.5, [bridge])
        assert bridge.output().count("holding the pose") == holds
        peer.destroy_publisher(policy)
        peer.destroy_publisher(instructions)
        peer.destroy_client(reset)
    finally:
        bridge.stop()


def test_calvin_bridge_renders_true_depth_and_a_world_frame_cloud_after_a_reset(peer, processes):
    """calvin_env's EGL renderer belongs to the thread that made it: before run_node built nodes in their
    executor's thread, every render after the first (steps, resets) came back at the near plane."""
    pytest.importorskip("calvin_env", reason="calvin_env (CALVIN's simulator) is not installed; it is not on PyPI")
    from sensor_msgs.msg import Image, PointCloud2

    from openhelix_ros.sim.calvin_states import calvin_state_for_condition
    from openhelix_ros.sim.protocol import initial_conditions

    bridge = processes.node("calvin_bridge", "backend:=calvin", "clock_mode:=lockstep", "step_timeout:=30.0")
    depth = Watch(peer, "camera/static/depth", Image)
    points = Watch(peer, graph.POINTS, PointCloud2)
    peer.create_publisher(EETrajectory, graph.EE_TRAJECTORY, TRAJECTORY_QOS)  # a policy: the bridge publishes
    reset = peer.create_client(ResetScene, graph.RESET_SCENE)
    wait_for(peer, reset.service_is_ready, 120, "reset_scene", [bridge])
    robot, scene = calvin_state_for_condition(initial_conditions()[3])
    assert call_service(peer, reset, ResetScene.Request(robot_obs=robot.tolist(), scene_obs=scene.tolist()),
                        60, [bridge]).success
    before = len(depth.messages), len(points.messages)  # lockstep stamps start again at 0: count instead
    wait_for(peer, lambda: len(depth.messages) > before[0] and len(points.messages) > before[1], 30,
             "a depth image and a cloud after the reset", [bridge])
    static = image_to_array(depth.last)
    assert 3.5 < float(np.median(static)) < 5.0  # the static camera is 4 m from the desk
    xyz = pointcloud2_to_points(points.last).xyz
    desk = (xyz[:, 0] > 0.0) & (xyz[:, 0] < 0.35) & (xyz[:, 1] > -0.15) & (xyz[:, 1] < -0.03)
    assert desk.sum() > 500 and abs(float(np.median(xyz[desk, 2])) - 0.44) < 0.01  # CALVIN's desk top
