"""The processes a graph test starts: node modules, console scripts and peer scripts (tests/peers/), each
a real, separate process whose stdout and stderr go to a log file under the test's tmp_path.

Tests get them from the ``processes`` fixture (tests/conftest.py)::

    def test_something(processes):
        node = processes.node("openhelix_ros.system1.node", "num_inference_steps:=2", ready="ready")
        driver = processes.peer("system1_driver.py", "--out", str(out), ready=None)
        assert driver.wait(timeout=150) == 0, driver.output()
        assert node.stop() == 0, node.output()       # SIGINT, as Ctrl-C; SIGKILL after the timeout

and whatever is still running when the test ends is stopped (SIGINT, then SIGKILL), with each process's
last log lines printed when the test failed. A module-scoped fixture uses the same class directly:
``with Processes(directory) as processes: ...``.

Nothing here imports rclpy: tests/unit imports this module too (for TESTS_DIR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
PEERS_DIR = TESTS_DIR / "peers"
ROOT = TESTS_DIR.parent
POLL = 0.05  # s between looks at a log file


class Process:
    """One started process, its output (stdout and stderr together) in ``log_path``.

    ``alive``, ``returncode``, ``label``, ``log_path`` and ``log_tail()`` are what
    ``openhelix_ros.common.processes.wait_for`` / ``call_service`` look at in their ``processes`` argument,
    so a Process can be watched by them as a NodeProcess is.
    """

    def __init__(self, label: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                 stdin=None):
        self.label = label
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        with log_path.open("w") as log:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=stdin,
                                          env=dict(env if env is not None else os.environ))

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """Everything the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_line(self, marker: str, timeout: float = 30.0) -> str:
        """The first line of output containing ``marker``, once it is there; AssertionError (with the
        output) if the process exits without printing it or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive  # read after checking: a line printed just before exiting still counts
            for line in self.output().splitlines(keepends=True):
                if marker in line:
                    return line
            if exited or time.monotonic() > deadline:
                state = f"exited {self.returncode}" if exited else f"not within {timeout:g} s"
                raise AssertionError(f"{self.label} never printed {marker!r} ({state}); output:\n{self.log_tail()}")
            time.sleep(POLL)

    def follow(self) -> Iterator[str]:
        """The lines of output as they are written (for a reader thread); ends once the process has exited
        and everything it printed has been read."""
        position, partial = 0, ""
        while True:
            exited = not self.alive
            with self.log_path.open(errors="replace") as log:
                log.seek(position)
                chunk = log.read()
                position = log.tell()
            *lines, partial = (partial + chunk).split("\n")
            yield from (line + "\n" for line in lines)
            if exited and not chunk:
                if partial:
                    yield partial
                return
            if not chunk:
                time.sleep(0.01)

    def send_signal(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; AssertionError (with its output) if it is still running
        after ``timeout`` s (it is left running: the fixture's teardown stops it)."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} still running after {timeout:g} s; output:\n"
                                 f"{self.log_tail()}") from None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Send ``sig`` (SIGINT, as Ctrl-C, by default) and wait up to ``timeout`` s; SIGKILL if it has not
        ended by then. Returns the exit status (-9 after a kill)."""
        self.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"Process({self.label!r}, pid {self.pid}, {state}, log {self.log_path})"


class Processes:
    """Starts processes for one test (or one module-scoped fixture) and stops whatever is left at the end.

    ``node`` runs a node module (``python -m``; a graph node name such as ``calvin_bridge`` is accepted
    too), ``peer`` a script of tests/peers/ (with tests/ on its PYTHONPATH, so it can import support),
    ``command`` any argv (``openhelix up``, a console script). Each takes ``ready``: a marker to wait for
    in the output before returning (peers print READY, the default for them), None not to wait.
    """

    #: Every Processes not yet closed; tests/conftest.py reports module-scoped ones for failed tests.
    open_sets: list[Processes] = []

    def __init__(self, directory: Path, *, report_on_failure: bool = True):
        self.directory = Path(directory) / "processes"
        self.started: list[Process] = []
        self.report_on_failure = report_on_failure  # False: its owner (the fixture) prints the report
        Processes.open_sets.append(self)

    def node(self, node: str, *parameters: str, params_files: Sequence[str | Path] = (), namespace: str = "",
             remaps: Mapping[str, str] | None = None, label: str | None = None, ready: str | None = None,
             timeout: float = 60.0, **options) -> Process:
        """``python -m <module> --ros-args [--params-file f]... [-r __ns:=namespace] [-p name:=value]...
        [-r from:=to]...``; ``parameters`` are ``name:=value`` strings."""
        from openhelix_ros.common.graph import NODE_MODULES

        module = NODE_MODULES.get(node, node)
        argv = [sys.executable, "-m", module, "--ros-args"]
        for path in params_files:
            argv += ["--params-file", str(path)]
        if namespace:
            argv += ["-r", f"__ns:={namespace}"]
        for parameter in parameters:
            argv += ["-p", parameter]
        for source, target in (remaps or {}).items():
            argv += ["-r", f"{source}:={target}"]
        names = {value: key for key, value in NODE_MODULES.items()}
        return self.command(argv, label=label or names.get(module, module), ready=ready, timeout=timeout,
                            **options)

    def peer(self, script: str, *args: str, label: str | None = None, ready: str | None = "READY",
             timeout: float = 30.0, **options) -> Process:
        """``python tests/peers/<script> args...``, by default returning once it printed READY."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS_DIR),
                                                                          os.environ.get("PYTHONPATH")])))
        return self.command([sys.executable, str(PEERS_DIR / script), *args], label=label or Path(script).stem,
                            ready=ready, timeout=timeout, env=env, **options)

    def command(self, argv: Sequence[str | Path], *, label: str | None = None, ready: str | None = None,
                timeout: float = 60.0, kind: type[Process] = Process, **options) -> Process:
        """Any command line; ``kind`` a subclass of Process to make (support.graphs.GraphCommand);
        ``options`` (env, stdin) go to Process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        label = self._unique(label or Path(str(argv[0])).name)
        process = kind(label, argv, self.directory / f"{label}.log", **options)
        self.started.append(process)
        if ready is not None:
            process.wait_for_line(ready, timeout)
        return process

    def _unique(self, label: str) -> str:
        taken = {process.label for process in self.started}
        unique, count = label, 1
        while unique in taken:
            count += 1
            unique = f"{label}-{count}"
        return unique

    def stop_all(self, timeout: float = 15.0) -> list[int]:
        """SIGINT to every process still running, SIGKILL to what is left after ``timeout`` s in total.
        Returns the exit statuses in start order."""
        for process in self.started:
            process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for process in self.started:
            try:
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        return [process.popen.returncode for process in self.started]

    def report(self, lines: int = 40) -> str:
        """Each process's state and last ``lines`` lines of output."""
        return "\n".join(f"----- {process!r}, last {lines} lines:\n{process.log_tail(lines)}"
                         for process in self.started)

    def close(self, failed: bool = False) -> None:
        """Stop every process still running; print the report when ``failed``."""
        try:
            self.stop_all()
        finally:
            if self in Processes.open_sets:
                Processes.open_sets.remove(self)
        if failed and self.started:
            print(f"\nprocesses of the failed test:\n{self.report()}")

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(failed=exc_type is not None)


def drive(node: Process, driver: Process, timeout: float, name: str) -> str:
    """Wait for ``driver`` (a peer exercising ``node``) to finish, then check that the node was still up
    and stops cleanly; returns the node's log."""
    driver_code = driver.wait(timeout=timeout)
    alive = node.alive
    code = node.stop()
    text = node.output()
    assert driver_code == 0, f"driver failed:\n{driver.output()}\nnode log:\n{text}"
    assert alive, f"{name} died during the scenario:\n" + text
    assert code == 0, f"{name} did not shut down cleanly:\n" + text
    return text
