"""Screenshots of the viewer in headless Chromium (Debian's ``chromium`` package), for tests and
``openhelix view --screenshot``. WebGL runs on SwiftShader, Chromium's CPU renderer, so no GPU or display
is needed; nothing is downloaded at run time.

The page is driven over the DevTools protocol in real time: Chromium starts with a remote-debugging port,
the page is navigated, given ``settle`` seconds of wall-clock time, and captured with
``Page.captureScreenshot``. (``--screenshot`` with ``--virtual-time-budget`` was tried first: virtual
time advances only while the page is idle, and about one load in ten here never finished.)
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The Chromium executable on PATH (or $OPENHELIX_CHROMIUM), None when there is none."""
    chosen = os.environ.get("OPENHELIX_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


STDERR_FILE = "chromium-stderr.log"  # in the temporary profile


def _chromium() -> str:
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (install Debian's chromium package, or set OPENHELIX_CHROMIUM)")
    return browser


class DevToolsPage:
    """One page of a running Chromium, spoken to over its DevTools websocket (JSON commands by id)."""

    def __init__(self, websocket_url: str, timeout: float) -> None:
        from websockets.sync.client import connect  # viser's own dependency

        try:
            self._socket = connect(websocket_url, open_timeout=timeout, max_size=None)
        except Exception as error:  # OSError, a timeout or a refused handshake
            raise RuntimeError(f"cannot connect to Chromium's DevTools at {websocket_url}: {error}") from error
        self._ids = itertools.count(1)
        self._timeout = timeout

    def call(self, method: str, **params) -> dict:
        """Send a command and return its result; events that arrive meanwhile are skipped."""
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"Chromium did not answer {method} within {self._timeout:g} s")
            try:
                reply = json.loads(self._socket.recv(timeout=left))
            except TimeoutError:
                raise RuntimeError(f"Chromium did not answer {method} within {self._timeout:g} s") from None
            except Exception as error:  # websockets' ConnectionClosed: Chromium went away
                raise RuntimeError(f"Chromium's DevTools connection failed during {method}: {error}") from error
            if reply.get("id") != command_id:
                continue
            if "error" in reply:
                raise RuntimeError(f"Chromium refused {method}: {reply['error'].get('message', reply['error'])}")
            return reply.get("result", {})

    def close(self) -> None:
        self._socket.close()


def _debugging_port(profile: Path, process: subprocess.Popen, timeout: float) -> int:
    """The port Chromium chose (--remote-debugging-port=0 writes it to DevToolsActivePort)."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = (profile / STDERR_FILE).read_text(errors="replace").strip()[-600:]
            raise RuntimeError(f"Chromium exited (code {process.returncode}) before opening its debugging port: "
                               f"{said}")
        if active.is_file():
            first = active.read_text().split("\n", 1)[0].strip()
            if first.isdigit():
                return int(first)
        time.sleep(0.05)
    raise RuntimeError(f"Chromium opened no debugging port within {timeout:g} s")


def _first_page(port: int, timeout: float) -> str:
    """The websocket URL of the page Chromium opened at start."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as reply:
                pages = [target for target in json.load(reply) if target.get("type") == "page"]
        except (OSError, ValueError) as error:  # URLError is an OSError
            raise RuntimeError(f"Chromium's DevTools list at port {port} failed: {error}") from error
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"Chromium has no page to drive after {timeout:g} s")
        time.sleep(0.05)


def _argv(browser: str, profile: str, width: int, height: int, *extra: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", *extra]


@contextlib.contextmanager
def watching(url: str, width: int = 1280, height: int = 800):
    """Headless Chromium showing ``url`` (drawing every update, as a person's browser would) while the
    block runs; yields its process (the leader of its process group)."""
    browser = _chromium()
    with tempfile.TemporaryDirectory(prefix="openhelix_chromium_", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(_argv(browser, profile, width, height, url), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            yield process
        finally:
            _stop_group(process)


def screenshot(url: str, output: str | os.PathLike, width: int = 1280, height: int = 800,
               settle: float = 8.0, timeout: float = 60.0, steady_within: float = 20.0) -> Path:
    """Load ``url``, let it run ``settle`` seconds (the websocket connects, the scene arrives and is drawn)
    and then until it stands still (at most ``steady_within`` seconds more), and write a ``width`` ×
    ``height`` PNG to ``output``. RuntimeError naming what failed: no Chromium, a
    Chromium that exits or does not answer within ``timeout`` seconds, a page that fails to load."""
    browser = _chromium()
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="openhelix_chromium_", ignore_cleanup_errors=True) as profile:
        argv = _argv(browser, profile, width, height, "--remote-debugging-port=0", "about:blank")
        # Its own process group: Chromium's renderer and GPU processes are stopped with it, before its
        # profile is removed (one still writing there once made the removal fail).
        # stderr to a file, never a pipe nobody reads: Chromium's warnings would fill it and block it.
        with open(Path(profile) / STDERR_FILE, "w") as said:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=said, start_new_session=True)
        page = None
        try:
            port = _debugging_port(Path(profile), process, timeout)
            page = DevToolsPage(_first_page(port, timeout), timeout)
            page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            navigated = page.call("Page.navigate", url=url)
            if navigated.get("errorText"):
                raise RuntimeError(f"Chromium could not load {url}: {navigated['errorText']}")
            time.sleep(settle)
            # Then until two captures a second apart agree: on a busy machine the scene can still be
            # fading in after ``settle``. A page that keeps moving (a live graph) is taken as it is at
            # ``settle + steady_within``.
            image = page.call("Page.captureScreenshot", format="png")["data"]
            deadline = time.monotonic() + steady_within
            while time.monotonic() < deadline:
                time.sleep(1.0)
                previous, image = image, page.call("Page.captureScreenshot", format="png")["data"]
                if image == previous:
                    break
        finally:
            if page is not None:
                page.close()
            _stop_group(process)
    output.write_bytes(base64.b64decode(image))
    return output


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to Chromium's process group, SIGKILL to what is left of it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the browser is gone; its children go with one more signal
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return
