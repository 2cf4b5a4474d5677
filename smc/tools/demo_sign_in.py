"""The demo's sign-in: the OpenID Connect provider of dev/idp (npm ``oidc-provider``, its users in
dev/idp/users.toml) started beside the app, and the ``[auth]`` secrets that point Streamlit at it.

``make run``, the browser tests and the bench use it; a real deployment configures its own provider in
``.streamlit/secrets.toml`` instead (docs/access.md).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from smc import settings
from smc.access import permissions
from smc.access.identity import AccessRefused, load_roles
from smc.store.cuts import list_cuts

IDP_DIR = settings.ROOT / "dev" / "idp"
USERS_FILE = IDP_DIR / "users.toml"
CLIENT_ID, CLIENT_SECRET = "smc-dashboard", "smc-demo-client-secret"  # the demo provider's one client
READY = "idp ready "  # the line dev/idp/server.mjs prints once it listens


class ProviderFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_users() -> list[dict]:
    return tomllib.loads(USERS_FILE.read_text(encoding="utf-8"))["users"]


@contextlib.contextmanager
def demo_provider(port: int | None = None, start_timeout_s: float = 30) -> Iterator[str]:
    """Run the demo provider on 127.0.0.1 (``port``, or a free one) and yield its issuer URL; stopped on exit."""
    node = shutil.which("node")
    if node is None or not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise ProviderFailed("the demo provider needs Node.js and its packages: npm ci --prefix dev/idp")
    port = port or free_port()
    env = dict(os.environ, IDP_PORT=str(port), IDP_CLIENT_ID=CLIENT_ID, IDP_CLIENT_SECRET=CLIENT_SECRET,
               IDP_USERS=str(USERS_FILE))
    proc = subprocess.Popen([node, str(IDP_DIR / "server.mjs")], cwd=IDP_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield _wait_ready(proc, start_timeout_s)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(proc: subprocess.Popen, timeout_s: float) -> str:
    selector, seen = selectors.DefaultSelector(), []
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not selector.select(timeout=0.2):
            continue
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if line.startswith(READY):
            return line.removeprefix(READY).strip()
    proc.kill()
    raise ProviderFailed("the demo provider did not start: " + "".join(seen)[-2000:])


def demo_user(username: str) -> dict:
    return next(u for u in demo_users() if u["username"] == username)


def type_password(page, username: str, password: str | None = None, timeout_ms: float = 30_000) -> None:
    """Fill in and send the demo provider's own login form (a Playwright page on its way there)."""
    page.wait_for_selector("#username", timeout=timeout_ms)
    page.fill("#username", username)
    page.fill("#password", demo_user(username)["password"] if password is None else password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page, app_url: str, username: str, timeout_ms: float = 30_000) -> None:
    """Sign in at the app as a demo user through the provider's form, as a person does (the bench, the tests)."""
    page.goto(app_url)
    page.get_by_role("button", name="Sign in").click()
    type_password(page, username, timeout_ms=timeout_ms)
    page.get_by_text(demo_user(username)["name"]).first.wait_for(timeout=timeout_ms)


def secrets_toml(app_url: str, issuer: str, cookie_secret: str) -> str:
    """Streamlit's ``[auth]`` secrets for the app at ``app_url`` signing in at the demo provider: the sign-in
    provider, and a second section for the same client that makes the provider ask for the password again."""
    metadata = f"{issuer}/.well-known/openid-configuration"
    client = f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\nserver_metadata_url = "{metadata}"\n'
    return (f'[auth]\nredirect_uri = "{app_url}/oauth2callback"\ncookie_secret = "{cookie_secret}"\n\n'
            f"[auth.{settings.AUTH_PROVIDER}]\n{client}\n"
            f'[auth.{settings.AUTH_FRESH_PROVIDER}]\n{client}client_kwargs = {{ prompt = "login" }}\n')


def write_secrets(path: Path, app_url: str, issuer: str, cookie_secret: str | None = None) -> Path:
    """The secrets file, readable by its owner only (it holds the cookie secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets_toml(app_url, issuer, cookie_secret or secrets.token_urlsafe(32)))
    return path


def users_table() -> str:
    """The demo users as `make run` prints them, with the role the roles file gives their groups."""
    roles = load_roles(settings.roles_file())

    def role(user: dict) -> tuple[str, str]:
        try:
            name = roles.role_of(user["groups"])
        except AccessRefused as refused:
            return f"none ({refused})", ""
        scope = permissions.subject_scope(name)
        sites = ", ".join(user.get("sites", [])) if scope == permissions.OWN_SITES else ""
        return permissions.ROLE_TITLES[name], f"{scope} ({sites})" if sites else scope

    rows = [("user name", "password", "role", "subject-level data")] + [
        (u["username"], u["password"], *role(u)) for u in demo_users()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def serve_demo(address: str, port: int, idp_port: int, secrets_file: Path) -> int:
    """What ``make run`` runs: the demo provider, then the app signing in at it (in the foreground, until Ctrl-C);
    the provider stops with the app. Prints the demo users to sign in as."""
    app_host = "127.0.0.1" if address in ("127.0.0.1", "0.0.0.0", "") else address
    app_url = f"http://{app_host}:{port}"
    if settings.single_db() is None and not list_cuts(settings.cuts_dir()):
        from smc.demo.build import build_demo_cuts

        print(f"Building the demo's three data cuts in {settings.cuts_dir()} (first start only)…", flush=True)
        build_demo_cuts(settings.cuts_dir())
    with demo_provider(idp_port) as issuer:
        write_secrets(secrets_file, app_url, issuer)
        print(f"Demo sign-in provider at {issuer} (dev/idp/users.toml); sign in at {app_url} as one of:\n"
              f"{users_table()}\n", flush=True)
        env = dict(os.environ, MALLOC_ARENA_MAX="2")
        command = [sys.executable, "-m", "streamlit", "run", str(settings.APP_SCRIPT), "--server.address", address,
                   "--server.port", str(port), "--secrets.files", str(secrets_file)]
        with subprocess.Popen(command, cwd=settings.ROOT, env=env) as app:
            try:
                return app.wait()
            except KeyboardInterrupt:
                app.terminate()
                return app.wait()
