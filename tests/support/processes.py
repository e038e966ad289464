"""Start test peers as real, separate Python processes and wait for them to say they are ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
PEERS_DIR = TESTS_DIR / "peers"


def start_peer(script: str, *args: str, ready_marker: str = "READY",
               timeout: float = 30.0) -> subprocess.Popen:
    """Run ``tests/peers/<script>`` with this interpreter; return once it prints ``ready_marker``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, str(PEERS_DIR / script), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if ready_marker in line:
            return process
    stop_peer(process)
    raise RuntimeError(f"{script} did not become ready within {timeout} s; output:\n{''.join(seen)}")


def stop_peer(process: subprocess.Popen, timeout: float = 10.0) -> str:
    """Stop a peer (SIGINT, then SIGKILL) and return whatever it printed after becoming ready."""
    if process.poll() is None:
        process.send_signal(2)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


def run_peer(script: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a peer to completion and return its result (stdout and stderr together)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(PEERS_DIR / script), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
