"""What every OpenHelix node shares: QoS profiles named for their purpose, parameter declaration with
descriptors, and a ``main()`` runner that shuts down cleanly on SIGINT and SIGTERM.

Kept deliberately small; node logic lives in the ROS-free cores, not here.
"""

from __future__ import annotations

import collections
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from openhelix_ros.common.health import NodeHealth
from openhelix_ros.common.parameters import ParameterSpec
from openhelix_ros.common.supervision import WorkerSupervisor

# Camera images, depth, point clouds, joint states, poses: a late sample is worth less than the next
# one, so never retransmit (best effort) and keep only a few. A best-effort subscriber also accepts
# reliable publishers, so this profile works on both ends.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)

# Goal latents: every one matters (System 2 is slow) and a System 1 that starts late must get the
# newest at once, hence transient local. Both ends must be: a transient-local subscriber does not match
# a volatile publisher. The writer keeps only the newest (all a late joiner needs); readers keep more,
# since the exact-Asy(N) reader picks the latent of one step: with depth 1, two latents arriving while
# System 1 plans would leave it only the second.
LATENT_PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                  reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
LATENT_SUBSCRIBER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                   reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Trajectories and other commands: delivered reliably, but only the newest counts (an old trajectory
# queued behind a new one must not be executed), and a late joiner must not act on a stale command.
TRAJECTORY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                            reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.VOLATILE)

# The emergency stop is a latched state (arm/estop.py): reliable so a press is never lost on the way, and
# transient local (depth 1: only the current state matters) so an arm_interface that starts or restarts
# after the press holds at once. Publishers and arm_interface both use it; a publisher it cannot match
# (best effort, volatile) is reported by arm_interface as not heard.
ESTOP_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)

# A reader for operator commands from any tool (a joystick driver, `ros2 topic pub`): best effort and
# volatile match every publisher, reliable or not, latched or not; depth 10 so a quick burst is seen in
# order.
ANY_PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                               reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE)

# Instructions are rare and each one matters (a lost one is a lost subtask): reliable on both ends.
# The sender latches the current one (transient local, depth 1) so a node that starts or restarts late
# still gets it. A reader needs two subscriptions for that (subscribe_instructions): a transient-local one,
# which alone is handed the latched instruction on joining but matches only latched senders, and a
# volatile one, which hears any reliable sender (a user's `ros2 topic pub` too) but nothing sent before it
# joined.
INSTRUCTION_PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                       reliability=ReliabilityPolicy.RELIABLE,
                                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
INSTRUCTION_SUBSCRIBER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                        reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.VOLATILE)
INSTRUCTION_LATCHED_SUBSCRIBER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                                reliability=ReliabilityPolicy.RELIABLE,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL)


def subscribe_instructions(node: Node, callback: Callable[[Any], None]) -> None:
    """Call ``callback`` once for every instruction sent on the graph, the one latched before ``node``
    started included (see INSTRUCTION_PUBLISHER_QOS).

    A latched sender's message reaches both subscriptions; the second copy is the same sample (the same
    writer and its sequence number) and is skipped. Two messages with equal contents are still two: a new
    evaluator run numbers its instructions from 1 again.
    """
    from openhelix_msgs.msg import Instruction
    from openhelix_ros.common import graph

    heard: collections.deque = collections.deque(maxlen=64)  # far more than both readers' queues hold
    lock = threading.Lock()

    def on_instruction(message, info) -> None:
        gid = info.get("publisher_gid") or {}
        sample = (bytes(gid.get("data", b"")), info.get("publication_sequence_number"), info.get("source_timestamp"))
        with lock:
            if sample in heard:
                return
            heard.append(sample)
        callback(message)

    node.create_subscription(Instruction, graph.INSTRUCTION, on_instruction, INSTRUCTION_SUBSCRIBER_QOS)
    # A volatile sender does not match the latched reader, by design (the volatile one hears it): no warning.
    node.create_subscription(Instruction, graph.INSTRUCTION, on_instruction, INSTRUCTION_LATCHED_SUBSCRIBER_QOS,
                             event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda event: None))


# Images and clouds in lockstep mode: every observation is one the policy must answer, and a best-effort
# reader loses large images under load even from the bridge's reliable writer (measured: the image of
# step 30 of 90 lost with the embedded model on the shared 2-core machine). The lockstep bridge publishes
# reliable, keep-last 10, so this matches it; a best-effort camera (realtime) would not, hence
# SENSOR_QOS there.
LOCKSTEP_SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)

# Scene states: each is a step (the evaluator counts realtime steps by them; the expert and the teleop
# node answer every lockstep observation), so none may be lost: reliable, with room for a burst while a
# subscriber is busy. Volatile: a late joiner must not take an old state for the current one.
SCENE_STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)

def declare_parameters(node: Node, specs: Sequence[ParameterSpec]) -> dict[str, Any]:
    """Declare every spec on ``node`` and return the values in effect (defaults or overrides)."""
    values = {}
    for spec in specs:
        descriptor = spec.descriptor()
        if isinstance(spec.default, (list, tuple)) and not spec.default:
            # rclpy cannot infer an array type from an empty default: declare the type alone (the
            # parameter stays unset unless overridden) and read an unset one as the empty default.
            node.declare_parameter(spec.name, Parameter.Type(descriptor.type), descriptor)
            try:
                value = node.get_parameter(spec.name).value
            except ParameterUninitializedException:
                value = []
        else:
            value = node.declare_parameter(spec.name, spec.default, descriptor).value
        values[spec.name] = list(value) if isinstance(value, (list, tuple)) else value
    return values


# The bridge's outputs.
# Sensor streams go out reliable: a best-effort subscriber (System 1, RViz) still matches and gets them
# best effort, while a reliable one (the recorder follows its publishers) loses no frame of a
# demonstration. Keep-last 10 rather than DESIGN's 1-5: a reliable writer drops what falls out of its
# history, and a recorder writing clouds to disk was measured lagging 4 steps behind a lockstep bridge.
SENSOR_PUBLISH_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
# /clock: only the newest time matters; reliable so a sim-time node never misses the tick it waits on.
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)


# The evaluator's.
# Progress is for people and logs: reliable, a small backlog, nothing replayed to late joiners.
PROGRESS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
# Trajectories are only counted and timed here, so every one matters: the publisher's reliable
# volatile profile, but a deeper queue than System 1's keep-last 1 so a busy moment drops none.
TRAJECTORY_COUNT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                                  reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


# /diagnostics: what ROS drivers and diagnostic_updater publish, reliable with a small backlog.
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)


# Failures of worker threads started with start_worker in this process, and their supervisors; run_node
# watches both.
_worker_failures: list[BaseException] = []
_supervisors: list[WorkerSupervisor] = []


class WorkerHung(RuntimeError):
    """A supervised worker's job ran past its deadline."""


class NodeFailed(RuntimeError):
    """The node can no longer do its job, for a reason its message says in full (the recorder's disk is
    full): ``run_node`` stops it and exits 1 with that one line and no traceback, so whoever started it
    (``openhelix up``, a launch file, collect) sees the failure instead of a node that looks alive."""


def fail_node(error: NodeFailed) -> None:
    """Stop the node ``run_node`` spins with ``error``; callable from any thread, callbacks included."""
    _worker_failures.append(error)


def start_worker(node: Node, target: Callable[[], None], name: str,
                 supervisor: WorkerSupervisor | None = None) -> threading.Thread:
    """Run ``target`` (a node's long-running loop, e.g. inference) in a daemon thread. If it raises,
    the traceback goes to the node's log and ``run_node`` stops the node and exits non-zero: a node
    whose worker died must not stay up looking healthy. With a ``supervisor`` (common/supervision.py),
    which the loop runs its jobs through, a job past the supervisor's deadline does the same."""
    if supervisor is not None:
        _supervisors.append(supervisor)

    def guarded() -> None:
        try:
            target()
        except BaseException as error:
            node.get_logger().fatal(f"worker thread {name!r} died, stopping the node:\n"
                                    + "".join(traceback.format_exception(error)))
            _worker_failures.append(error)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def start_diagnostics(node: Node, health: NodeHealth, period: float = 1.0):
    """Publish ``health`` on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) every ``period`` s, one
    DiagnosticStatus per part ("system1: node", "system1: dropped messages", "system1: worker ...")."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from openhelix_ros.common import graph

    publisher = node.create_publisher(DiagnosticArray, graph.DIAGNOSTICS, DIAGNOSTICS_QOS)
    hardware_id = node.get_fully_qualified_name()

    def publish() -> None:
        array = DiagnosticArray()
        array.header.stamp = node.get_clock().now().to_msg()
        array.status = [DiagnosticStatus(level=bytes([status.level]), name=status.name, message=status.message,
                                         hardware_id=hardware_id,
                                         values=[KeyValue(key=key, value=value) for key, value in status.values])
                        for status in health.statuses()]
        publisher.publish(array)

    return node.create_timer(period, publish)


def set_remote_parameter(client, name: str, value: str, timeout: float) -> str | None:
    """Set another node's string parameter through its ``set_parameters`` service (``client``), waiting
    at most ``timeout`` s for the service and again for the answer; None on success, else what went
    wrong. Call it from a thread other than the executor's: the answer arrives through the executor."""
    service = client.srv_name
    if not client.wait_for_service(timeout_sec=timeout):
        return f"{service} not available after {timeout:g} s"
    parameter = ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))
    future = client.call_async(SetParameters.Request(parameters=[parameter]))
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        return f"no answer from {service} within {timeout:g} s"
    if future.exception() is not None:
        return repr(future.exception())
    [outcome] = future.result().results
    return None if outcome.successful else (outcome.reason or "the node refused without a reason")


def get_remote_parameters(client, names: Sequence[str], timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    """Read another node's parameters through its ``get_parameters`` service (``client``): (name -> value,
    None), or (None, what went wrong). Same waits and thread rule as ``set_remote_parameter``."""
    service = client.srv_name
    if not client.wait_for_service(timeout_sec=timeout):
        return None, f"{service} not available after {timeout:g} s"
    future = client.call_async(GetParameters.Request(names=list(names)))
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        return None, f"no answer from {service} within {timeout:g} s"
    if future.exception() is not None:
        return None, repr(future.exception())
    values = future.result().values
    if len(values) != len(names):
        return None, f"{service} answered {len(values)} values for {len(names)} names"
    return {name: Parameter.from_parameter_msg(ParameterMsg(name=name, value=value)).value
            for name, value in zip(names, values, strict=True)}, None


def run_node(make_node: Callable[[], Node], args: Sequence[str] | None = None, threads: int = 1) -> int:
    """Initialise ROS, spin the node ``make_node()`` builds until SIGINT or SIGTERM, shut down cleanly.

    rclpy's own signal handlers are replaced by ones that only set a flag, so a signal never interrupts
    a callback half-way (a bag write, say); the node's ``close()``, when it has one, runs after spinning
    stops and before the node is destroyed, so it can flush and close files; its ``wind_down()``, when it
    has one, runs before spinning stops, so work in flight can still be answered. ``threads`` > 1 spins a
    MultiThreadedExecutor, for nodes whose long callbacks (IK, inference) must not delay short ones
    (estop); such a node puts them in separate callback groups and guards shared state itself.
    Returns the exit status.
    """
    # The environment is the caller's: the openhelix verbs and the Makefile keep discovery on loopback and
    # logs in the project (environment.apply_ros_defaults); a node under ros2 launch on a robot's network
    # must find drivers on other machines.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=list(args) if args is not None else None, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
    failures: list[BaseException] = []

    # Spinning ends by completing this future, not by shutting the executor down under a running spin:
    # the spin loop then stops between dispatches, so every callback it handed to the worker threads is
    # already queued and executor.shutdown() below waits for all of them. (Shutting down first let a
    # dispatch land after the wait, and that callback then ran against a node being destroyed.)
    finished = Future()
    built = threading.Event()
    made: list[Node] = []
    refused: list[BaseException] = []

    def spin() -> None:
        # The node is built in the thread that runs its callbacks (with one executor thread, all of them):
        # a GL context belongs to the thread that made it, and calvin_env's EGL renderer, made with the
        # bridge's simulator, rendered garbage depth (the near plane) from any other thread.
        try:
            made.append(make_node())
            executor.add_node(made[0])
        except BaseException as error:
            refused.append(error)
            return
        finally:
            built.set()  # only now may the main thread wind the node down
        try:
            executor.spin_until_future_complete(finished)
        except ExternalShutdownException:
            pass
        except BaseException as error:  # a callback raised: stop, and re-raise it in the main thread
            failures.append(error)
        finally:
            stop.set()

    try:
        # The executor spins in a thread; the main thread only waits for a signal, so handlers run
        # promptly and never inside a callback. (Spinning a MultiThreadedExecutor with spin_once from
        # here leaves tasks behind that fail when the node is destroyed.)
        spinner = threading.Thread(target=spin, name="executor", daemon=True)
        spinner.start()
        built.wait()
        if refused:
            if isinstance(refused[0], (ValueError, ParameterException)):
                # Bad parameters are a configuration error: say which, exit non-zero, no traceback.
                print(f"[FATAL] cannot start: {refused[0]}", file=sys.stderr, flush=True)
                return 2
            raise refused[0]
        node = made[0]
        while not stop.wait(0.1):
            if _worker_failures:
                failures.append(_worker_failures[0])
                break
            hung = next(filter(None, (supervisor.hung() for supervisor in _supervisors)), None)
            if hung is not None:
                # The hung thread cannot be stopped from here; the node exits non-zero so a supervisor
                # (launch respawn, the CLI's runner) restarts it, its daemon thread dying with the process.
                node.get_logger().fatal(f"{hung}; stopping the node")
                failures.append(WorkerHung(hung))
                break
        wind_down = getattr(node, "wind_down", None)
        if callable(wind_down) and not failures:
            wind_down()  # the executor still spins: work in flight can finish and answer (the evaluator)
        finished.set_result(None)
        spinner.join(timeout=10.0)
        executor.shutdown()  # waits for the callbacks still running on worker threads
        if failures:
            if isinstance(failures[0], NodeFailed):
                print(f"[FATAL] {failures[0]}", file=sys.stderr, flush=True)
                return 1
            raise failures[0]
        return 0
    finally:
        # The executor is shut down first (a no-op if it already is), so close() and destroy_node()
        # never race a callback.
        executor.shutdown()
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
