"""system2: camera image + instruction -> goal latent (openhelix_msgs/GoalLatent).

Subscribes ``camera/static/image_raw`` (sensor_msgs/Image, rgb8; bgr8/rgba8/bgra8 are converted) and
``instruction`` (openhelix_msgs/Instruction); publishes ``goal_latent`` stamped with the image it
encoded (``observation_stamp``), its sequence number and the time from image arrival to latent.

Timing (docs/ros_graph.md):
- ``realtime``: encodes the newest image at ``rate`` Hz (0: as fast as the model goes); an image is
  encoded once unless a new instruction arrives.
- ``lockstep``: sim time; encodes the images of steps 0, N, 2N, ... (``latent_period_steps`` = N; every
  step when N = 0), each exactly once per instruction and in order, so System 1 can wait for the exact
  Asy(N) latent. When a period's own image never came (this node started after the bridge published
  it), the first image of that period that comes (the bridge re-sends what it waits on) is encoded
  instead, and the log says Asy(N) was not exact there (system2/core.py, LockstepImages).

Inference runs in a worker thread: the executor keeps taking images and instructions meanwhile, so
in realtime the worker always finds the newest image. Bad input (wrong encoding, a broken buffer, an
empty instruction) is logged with its reason and dropped; the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from openhelix_msgs.msg import GoalLatent, Instruction
from openhelix_ros.common import graph
from openhelix_ros.common.conversions import goal_latent_to_msg, image_to_array, stamp_to_ns
from openhelix_ros.common.health import NodeHealth
from openhelix_ros.common.node_utils import (
    LATENT_PUBLISHER_QOS,
    LOCKSTEP_SENSOR_QOS,
    SENSOR_QOS,
    declare_parameters,
    run_node,
    start_diagnostics,
    start_worker,
    subscribe_instructions,
)
from openhelix_ros.common.supervision import WorkerSupervisor
from openhelix_ros.common.timing import CLOCK_MODES, RepeatLimiter, stamp_to_step
from openhelix_ros.system2.core import LOCKSTEP_QUEUE, LockstepImages, System2Core
from openhelix_ros.system2.parameters import PARAMETERS

COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")





# Lockstep: how long after a reset the new episode's images wait for its instruction before the last
# one is used (an instruction normally follows the reset within milliseconds).
INSTRUCTION_GRACE = 1.0  # s

# Model failures in a row after which the worker gives up and the node exits non-zero (a lasting CUDA
# out-of-memory, a broken device): a supervisor restarts it, where a silent node would help no one.
MAX_CONSECUTIVE_FAILURES = 5


class System2Node(Node):
    def __init__(self) -> None:
        super().__init__("system2")
        p = declare_parameters(self, PARAMETERS)
        if p["clock_mode"] not in CLOCK_MODES:
            raise ValueError(f"clock_mode must be one of {', '.join(CLOCK_MODES)}, got {p['clock_mode']!r}")
        self._lockstep = p["clock_mode"] == "lockstep"
        if self._lockstep:
            # Stamps of latents must be on the simulator's clock, the one ages are measured in.
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._rate = float(p["rate"])
        self._period_steps = int(p["latent_period_steps"])
        self._control_rate = float(p["control_rate"])
        if p["torch_threads"] > 0:
            torch.set_num_threads(int(p["torch_threads"]))
        try:
            self._core = System2Core.load(p["model"], p["checkpoint"], p["model_path"], p["seed"], p["device"])
        except (OSError, RuntimeError, KeyError) as error:  # a corrupt checkpoint, missing weights
            raise ValueError(f"cannot load System 2: {error}") from error
        self._core.max_instruction_chars = int(p["max_instruction_chars"])

        self._lock = threading.Condition()
        self._instruction: tuple[str, int] | None = None  # (text, sequence)
        # Lockstep, after a reset: until then the instruction in force is the last episode's, and the new
        # episode's images wait for the one that comes with it (at most INSTRUCTION_GRACE s).
        self._stale_until: float | None = None
        self._episode = 0
        self._newest: tuple[int, np.ndarray, float] | None = None  # realtime: (stamp ns, rgb, arrival)
        self._queue = LockstepImages(self._period_steps, LOCKSTEP_QUEUE)  # lockstep: images to encode
        self._sequence = 0
        self._stop = False
        self._said_waiting = False
        self._repeats = RepeatLimiter(2.0)
        self._health = NodeHealth(self.get_name())
        self._supervisor = WorkerSupervisor("system2-inference", p["worker_deadline"], MAX_CONSECUTIVE_FAILURES,
                                            log_error=self.get_logger().error)
        self._health.watch(self._supervisor)

        self._publisher = self.create_publisher(GoalLatent, graph.GOAL_LATENT, LATENT_PUBLISHER_QOS)
        self.create_subscription(Image, graph.STATIC_IMAGE, self._on_image,
                                 LOCKSTEP_SENSOR_QOS if self._lockstep else SENSOR_QOS)
        subscribe_instructions(self, self._on_instruction)
        self._worker = start_worker(self, self._work, "system2-inference", self._supervisor)
        start_diagnostics(self, self._health)
        mode = (f"lockstep, images of steps divisible by {self._period_steps}" if self._lockstep and self._period_steps
                else "lockstep, every step" if self._lockstep
                else f"realtime at {self._rate:g} Hz" if self._rate > 0 else "realtime, as fast as possible")
        vision = self._core.describe_vision()
        self.get_logger().info(f"system2 ready: model {self._core.model_id} ({self._core.latent_dim}-D latent tokens, "
                               f"latent {self._core.describe_latent()}{', ' + vision if vision else ''}), {mode}")

    # ----- subscriptions: convert, check, hand over to the worker -------------------------------------

    def _on_instruction(self, message: Instruction) -> None:
        self._health.received(graph.INSTRUCTION)
        try:
            text = self._core.check_instruction(message.text)
        except ValueError as error:
            self._health.dropped(graph.INSTRUCTION, str(error))
            self.get_logger().error(f"instruction {message.sequence} dropped: {error}")
            return
        instruction = (text, int(message.sequence))
        with self._lock:
            changed = instruction != self._instruction
            self._instruction = instruction
            self._stale_until = None
            self._lock.notify_all()
        if changed:  # senders may repeat an instruction so late joiners hear it: log news only
            self.get_logger().info(f"instruction {message.sequence}: {text!r}")

    def _drop(self, text: str) -> None:
        """Log why an image was dropped: each new reason at once, a repeated one every 2 s at most."""
        self._health.dropped(graph.STATIC_IMAGE, text)
        if self._repeats.should_log("image", text):
            self.get_logger().error(text)

    def _on_image(self, message: Image) -> None:
        arrival = time.monotonic()
        self._health.received(graph.STATIC_IMAGE)
        stamp = stamp_to_ns(message.header.stamp)
        if message.encoding not in COLOUR_ENCODINGS:
            self._drop(f"image dropped: encoding {message.encoding!r} is not colour "
                       f"(System 2 reads {', '.join(COLOUR_ENCODINGS)})")
            return
        try:
            rgb = image_to_array(message)[..., :3]
        except ValueError as error:
            self._drop(f"image dropped: {error}")
            return
        with self._lock:
            if self._lockstep:
                for note in self._queue.offer(stamp, stamp_to_step(stamp, self._control_rate), rgb, arrival):
                    self.get_logger().warning(note)
                if self._queue.episode != self._episode:
                    # A reset: the evaluator's instruction for the new episode is on its way. Encoding the
                    # new scene with the last episode's task would steer the first periods wrong.
                    self._episode = self._queue.episode
                    if self._instruction is not None:
                        self._stale_until = arrival + INSTRUCTION_GRACE
            else:
                self._newest = (stamp, rgb, arrival)
            self._lock.notify_all()

    # ----- the worker ---------------------------------------------------------------------------------

    def _next_job(self, last_done: tuple[int, int] | None):
        """Wait for something to encode: (stamp, rgb, arrival, instruction) or None on shutdown."""
        with self._lock:
            while not self._stop:
                if self._instruction is None:
                    if (self._queue or self._newest is not None) and not self._said_waiting:
                        self._said_waiting = True
                        self.get_logger().warning("images arrive but no instruction yet: no latent until one comes")
                elif self._lockstep and self._queue and self._stale_until is not None:
                    wait = self._stale_until - time.monotonic()
                    if wait > 0:
                        self._lock.wait(timeout=wait)
                        continue
                    self._stale_until = None
                    self.get_logger().warning(f"no instruction within {INSTRUCTION_GRACE:g} s of a reset: encoding "
                                              f"the new episode with the last one ({self._instruction[0]!r})")
                elif self._lockstep and self._queue:
                    image = self._queue.pop(self._instruction[1])
                    if image is not None:
                        return image.stamp_ns, image.rgb, image.arrival, self._instruction
                    continue  # only images already encoded for this instruction were waiting
                elif not self._lockstep and self._newest is not None:
                    stamp, rgb, arrival = self._newest
                    # The same image and instruction give the same latent: encode each pair once.
                    if (stamp, self._instruction[1]) != last_done:
                        return stamp, rgb, arrival, self._instruction
                self._lock.wait(timeout=0.5)
        return None

    def _work(self) -> None:
        last_done = None
        next_slot = time.monotonic()
        while True:
            if not self._lockstep and self._rate > 0:
                delay = next_slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            job = self._next_job(last_done)
            if job is None:
                return
            stamp, rgb, arrival, (text, instruction_sequence) = job
            next_slot = max(next_slot + (1.0 / self._rate if self._rate > 0 else 0.0), time.monotonic())
            last_done = (stamp, instruction_sequence)
            try:
                # An out-of-memory or a model error on one job must not end the worker (the node would stay
                # up, subscribed, and never publish a latent again): the supervisor logs it whole and the
                # next job is taken; MAX_CONSECUTIVE_FAILURES in a row raise, and the node exits non-zero.
                done, result = self._supervisor.run(
                    f"latent of the image at {stamp * 1e-9:.3f} s (instruction {instruction_sequence})",
                    self._core.encode, rgb, text)
            except ValueError as error:
                self.get_logger().error(f"image at {stamp * 1e-9:.3f} s not encoded: {error}")
                continue
            if not done:
                continue
            self._publish(result, stamp, time.monotonic() - arrival)

    def _publish(self, result, stamp: int, since_arrival: float) -> None:
        self._sequence += 1
        message = goal_latent_to_msg(result.goal, instruction=result.instruction, sequence=self._sequence,
                                     stamp=self.get_clock().now().nanoseconds, observation_stamp=stamp,
                                     inference_time=float(since_arrival), model_id=self._core.model_id)
        self._publisher.publish(message)
        self._health.published(graph.GOAL_LATENT)
        self._health.set_value("instruction", f"{result.instruction!r}"[:200])
        if self._sequence == 1 or self._sequence % 100 == 0:
            self.get_logger().info(f"latent {self._sequence}: image at {stamp * 1e-9:.3f} s, model "
                                   f"{result.inference_time * 1e3:.1f} ms, arrival to latent {since_arrival * 1e3:.1f} ms")

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(System2Node, args if args is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
