"""``openhelix view [--port 8080]``: watch a running graph in the browser.

Serves a viser page (three.js over a websocket) at http://HOST:PORT/ with the fused ``points`` cloud,
the arm's URDF posed at ``joint_states``, the ``ee_pose`` frame, the newest ``ee_trajectory`` coloured by
gripper command (green open, red closed), both camera images, the instruction, the latent's age against
System 2's Asy(N) window, System 1/System 2 rates and, during an evaluation, its chain and subtask. A text
box sends an instruction as ``openhelix say`` does. ``--bag DIR`` shows a recorded bag instead, with a
time slider and a play button. Binds to 127.0.0.1 unless ``--host`` says otherwise.
``--screenshot PNG`` loads the page once in headless Chromium after ``--settle`` seconds and exits.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openhelix_ros.sim.scene import ROBOT_BASE_POSITION

    parser.add_argument("--port", type=int, default=8080, help="the page's TCP port")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--namespace", default="", help="the graph's namespace, if it runs in one")
    parser.add_argument("--urdf", default="", help="the arm's URDF (default: pybullet_data's Franka Panda)")
    parser.add_argument("--no-robot", action="store_true", help="draw no arm (no URDF at hand)")
    x, y, z = ROBOT_BASE_POSITION
    parser.add_argument("--base", default=f"{x:g},{y:g},{z:g},90",
                        help="the arm's base in the world frame: x,y,z[,yaw_degrees] (default: the embedded "
                             "play table's)")
    parser.add_argument("--rate", type=float, default=10.0, help="redraws per second (at most)")
    parser.add_argument("--heavy-period", type=float, default=0.2,
                        help="seconds between redraws of the cloud and the camera images")
    parser.add_argument("--control-rate", type=float, default=30.0, help="env steps per second (latent ages)")
    parser.add_argument("--bag", default="", help="replay this recorded bag (a time slider) instead of a live graph")
    parser.add_argument("--screenshot", default="", help="write a PNG of the page (headless Chromium) and exit")
    parser.add_argument("--settle", type=float, default=10.0, help="with --screenshot: seconds to watch first")


def _check_port(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            return f"cannot serve on {host}:{port}: {error.strerror or error}"
    return None


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"openhelix view: --port must be 1..65535, got {args.port}", file=sys.stderr)
        return 2
    if not 0 < args.rate <= 60:
        print(f"openhelix view: --rate must be in (0, 60] redraws/s, got {args.rate:g}", file=sys.stderr)
        return 2
    problem = _check_port(args.host, args.port)  # viser would quietly take the next free port
    if problem:
        print(f"openhelix view: {problem}", file=sys.stderr)
        return 1
    import rclpy
    import viser
    from rclpy.executors import SingleThreadedExecutor

    from openhelix_ros.viewer.core import ViewerCore
    from openhelix_ros.viewer.node import ViewerNode
    from openhelix_ros.viewer.robot import UrdfModel, default_urdf
    from openhelix_ros.viewer.scene import ViewerScene, base_matrix

    try:
        base = base_matrix(args.base)
        robot = None if args.no_robot else UrdfModel(args.urdf or default_urdf())
        core = ViewerCore(control_rate=args.control_rate, heavy_period=args.heavy_period)
    except (ValueError, FileNotFoundError) as error:
        print(f"openhelix view: {error}", file=sys.stderr)
        return 2
    server = viser.ViserServer(host=args.host, port=args.port, label="OpenHelix-ROS", verbose=False)
    if args.bag:
        try:
            return _replay(args, server, core, robot, base)
        finally:
            server.stop()
    rclpy.init()
    holder: dict = {}
    try:
        scene = ViewerScene(server, robot, base, on_instruction=lambda text: holder["node"].say(text))
        node = holder["node"] = ViewerNode(core, scene, draw_rate=args.rate, namespace=args.namespace)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name="executor", daemon=True)
        spinner.start()
        url = _url(args, server)
        print(f"openhelix view: serving {url} (graph namespace {args.namespace or '/'}; Ctrl-C to stop)",
              flush=True)
        if args.screenshot:
            time.sleep(args.settle)
            return _screenshot(url, args.screenshot, core)
        try:
            while spinner.is_alive():
                spinner.join(0.5)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if "node" in holder:
            executor.shutdown()
            holder["node"].destroy_node()
        rclpy.try_shutdown()
        server.stop()


def _url(args: argparse.Namespace, server) -> str:
    return f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{server.get_port()}/"


def _screenshot(url: str, output: str, core) -> int:
    from openhelix_ros.viewer.browser import screenshot

    try:
        path = screenshot(url, output)
    except RuntimeError as error:
        print(f"openhelix view: {error}", file=sys.stderr)
        return 1
    print(f"openhelix view: wrote {path} ({sum(core.received.values())} messages shown)", flush=True)
    return 0


def _replay(args: argparse.Namespace, server, core, robot, base) -> int:
    """The bag under a time slider: each redraw shows the newest message of each topic at the slider's
    time; Play advances it at the recording's speed."""
    from openhelix_ros.viewer.node import MessageFeed
    from openhelix_ros.viewer.replay import BagReplay
    from openhelix_ros.viewer.scene import ViewerScene

    feed = MessageFeed(core)
    try:
        replay = BagReplay(args.bag, feed)
    except (ValueError, FileNotFoundError) as error:
        print(f"openhelix view: {error}", file=sys.stderr)
        return 2
    scene = ViewerScene(server, robot, base)
    step = 1.0 / args.control_rate
    slider = server.gui.add_slider("Time (s)", min=0.0, max=max(replay.duration, step), step=step, initial_value=0.0)
    playing = server.gui.add_checkbox("Play", initial_value=False)
    counts = ", ".join(f"{topic} {count}" for topic, count in sorted(replay.messages().items()))
    print(f"openhelix view: {args.bag}: {replay.duration:.1f} s ({counts})", flush=True)
    url = _url(args, server)
    print(f"openhelix view: serving {url} (Ctrl-C to stop)", flush=True)
    started = time.monotonic()
    period = 1.0 / args.rate
    try:
        while True:
            tick = time.monotonic()
            if playing.value:
                slider.value = min(slider.value + period, slider.max)
            # A slider position is one control step: what was recorded during that step shows.
            replay.seek(slider.value + step * 0.999)
            with feed.lock:
                frame = core.frame(tick)
            scene.draw(frame)
            if args.screenshot and tick - started >= args.settle:
                return _screenshot(url, args.screenshot, core)
            time.sleep(max(0.0, period - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        return 0
