"""Peer process: a stand-in scene server for the cross-process service test.

serve   offers reset_scene (openhelix_msgs/srv/ResetScene) and check_tasks (CheckTasks) with simple,
        checkable rules: reset validates array lengths and echoes the state; check_tasks reports as
        completed the known tasks whose name is in start_state.scene_obs_labels and rejects unknown ones.
call OUT  calls both services with good and bad requests and writes the responses to OUT as JSON.
"""

import argparse
import json
import sys

import rclpy

from openhelix_msgs.msg import SceneState
from openhelix_msgs.srv import CheckTasks, ResetScene
from openhelix_ros.common.messages import message_to_dict

KNOWN_TASKS = {"open_drawer", "close_drawer", "turn_on_led", "lift_red_block_table"}


def reset_scene(request: ResetScene.Request, response: ResetScene.Response) -> ResetScene.Response:
    for name, size in (("robot_obs", 15), ("scene_obs", 24)):
        given = len(getattr(request, name))
        if given not in (0, size):
            response.success = False
            response.message = f"{name} must have {size} values or none, got {given}"
            return response
    state = SceneState()
    state.header.frame_id = "world"
    state.robot_obs = list(request.robot_obs) or [0.0] * 15
    state.scene_obs = list(request.scene_obs) or [float(request.seed if request.use_seed else 0)] * 24
    response.success, response.message, response.state = True, "reset", state
    return response


def check_tasks(request: CheckTasks.Request, response: CheckTasks.Response) -> CheckTasks.Response:
    unknown = [task for task in request.tasks if task not in KNOWN_TASKS]
    if unknown:
        response.success, response.message = False, f"unknown task(s): {', '.join(unknown)}"
        return response
    labels = set(request.start_state.scene_obs_labels)
    response.completed = [task for task in request.tasks if task in labels]
    response.current_state = request.start_state
    response.current_state.step = request.start_state.step + 1
    response.success, response.message = True, "checked"
    return response


def call(node, out: str) -> int:
    reset = node.create_client(ResetScene, "reset_scene")
    check = node.create_client(CheckTasks, "check_tasks")
    for client in (reset, check):
        if not client.wait_for_service(timeout_sec=20.0):
            print(f"service {client.srv_name} not available", file=sys.stderr)
            return 1

    def ask(client, request):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        return message_to_dict(future.result())

    results = {
        "reset_default": ask(reset, ResetScene.Request(use_seed=True, seed=3)),
        "reset_given": ask(reset, ResetScene.Request(robot_obs=[0.5] * 15, scene_obs=[0.25] * 24)),
        "reset_bad": ask(reset, ResetScene.Request(robot_obs=[1.0] * 14)),
        "check": ask(check, CheckTasks.Request(
            tasks=["open_drawer", "turn_on_led"],
            start_state=SceneState(scene_obs_labels=["open_drawer", "drawer"], step=41))),
        "check_unknown": ask(check, CheckTasks.Request(tasks=["fly_to_the_moon"])),
    }
    with open(out, "w") as handle:
        json.dump(results, handle)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "call"])
    parser.add_argument("--out")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node(f"scene_services_{args.mode}")
    if args.mode == "call":
        return call(node, args.out)
    node.create_service(ResetScene, "reset_scene", reset_scene)
    node.create_service(CheckTasks, "check_tasks", check_tasks)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
