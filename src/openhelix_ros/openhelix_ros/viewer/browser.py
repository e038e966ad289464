"""Screenshots of the viewer in headless Chromium (Debian's ``chromium`` package), for tests and
``openhelix view --screenshot``. WebGL runs on SwiftShader, Chromium's CPU renderer, so no GPU or display
is needed; nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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


def screenshot(url: str, output: str | os.PathLike, width: int = 1280, height: int = 800,
               settle_ms: int = 8000, timeout: float = 40.0, attempts: int = 3) -> Path:
    """Load ``url``, let it run ``settle_ms`` of page time (the websocket connects, the scene arrives and
    is drawn), and write a PNG to ``output``. RuntimeError with Chromium's own words when it fails.

    Virtual time advances only while the page is idle, and about one load in ten never finished (seen
    here even with the viewer's redraws stopped; the others take about 12 s): a load that passes
    ``timeout`` is killed and tried again, up to ``attempts`` times."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (install Debian's chromium package, or set OPENHELIX_CHROMIUM)")
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="openhelix_chromium_") as profile:
        argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", f"--virtual-time-budget={settle_ms}",
                f"--screenshot={output}", url]
        for _ in range(attempts):
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise RuntimeError(f"Chromium did not finish loading {url} within {timeout:g} s, {attempts} times")
    if done.returncode != 0 or not output.is_file():
        raise RuntimeError(f"Chromium failed on {url} (exit {done.returncode}): {done.stderr.strip()[-600:]}")
    return output
