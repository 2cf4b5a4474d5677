"""The app served on a free local port, and the Chromium flags that work on this machine; shared by the
browser tests and ``python -m smc bench --browser``."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from smc import settings
from smc.tools import demo_sign_in

# What a failed page shows: a Streamlit exception box or an error alert.
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# Playwright cannot download its own browser here; the background-networking flags stop Chromium
# from calling hosts this machine cannot reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    path = settings.chromium_path()
    return str(path) if path.exists() else None


class ServerFailed(RuntimeError):
    pass


@contextlib.contextmanager
def serve(db_path, start_timeout_s: float = 60, script: Path = settings.APP_SCRIPT, issuer: str | None = None,
          cookie_secret: str | None = None, env: dict[str, str] | None = None):
    """Yield ``(url, process)`` of ``streamlit run app.py`` (or ``script``) on the database at ``db_path`` (None: the
    registry ``env["SMC_CUTS"]`` names), from the
    repository root as ``make run`` serves it, so the root's ``.streamlit/config.toml`` applies. With ``issuer``
    (the demo provider's URL) users sign in there; servers given the same ``cookie_secret`` share a sign-in, as
    replicas do. ``env``: more environment (settings) for the server."""
    port = demo_sign_in.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="smc-serve-") as folder:
        flags = []
        if issuer:
            secrets_file = demo_sign_in.write_secrets(Path(folder) / "secrets.toml", url, issuer, cookie_secret)
            flags = ["--secrets.files", str(secrets_file)]
        server_env = dict(os.environ, MALLOC_ARENA_MAX="2", **(env or {}))  # as `make run`
        if db_path is not None:
            server_env["SMC_DB"] = str(db_path)
        else:  # a registry, from SMC_CUTS in env
            server_env.pop("SMC_DB", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1", "--server.port",
             str(port), *flags], cwd=settings.ROOT, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            proc.kill()
            raise ServerFailed(f"streamlit did not start: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def resident_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ServerFailed(f"no VmRSS for process {pid}")
