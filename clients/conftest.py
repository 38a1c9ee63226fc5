"""What the client tests share: a real nginx serving the module (scripts/nginx-conf.sh's server:
the demo's /pubsub and the browser page, plus the locations in tests_nginx.conf) on a free port,
stopped by pid; and headless Debian Chromium driven through chromedriver by Selenium.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "target" / "release" / "libapisix_pubsub_rs.so"


@dataclass(frozen=True)
class Server:
    port: int
    prefix: Path

    def http(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str = "/pubsub") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        return (self.prefix / "logs" / "error.log").read_text(errors="replace")

    def has_push(self) -> bool:
        """Whether the module's instances have `send` (server push), asked of an instance."""
        import apisix_pubsub

        async def ask() -> bytes:
            async with apisix_pubsub.connect(self.ws("/probe/send")) as client:
                return (await client.request("cmd_empty")).message.state

        return asyncio.run(ask()) == b"yes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nginx() -> str:
    """The nginx scripts/runtime.sh decides on, the one nginx-conf.sh writes its config for."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "runtime.sh")], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name == "PUBSUB_NGINX":
            return value.strip("'").replace("'\\''", "'")
    raise RuntimeError("scripts/runtime.sh named no PUBSUB_NGINX")


def _wait_listening(port: int, master: subprocess.Popen[bytes], prefix: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if master.poll() is not None:
            log = (prefix / "logs" / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {master.returncode}:\n{log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening within 10 s")


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    if not LIBRARY.exists():
        pytest.fail(f"{LIBRARY} missing: run `cargo build --release` first")
    prefix = Path(tempfile.mkdtemp(prefix="apisix-pubsub-clients."))
    (prefix / "conf").mkdir()
    (prefix / "logs").mkdir()
    port = _free_port()
    env = dict(os.environ, PUBSUB_EXTRA_CONF=str(Path(__file__).parent / "tests_nginx.conf"))
    conf = subprocess.run(
        [str(ROOT / "scripts" / "nginx-conf.sh"), str(port), "256", "info", "logs/error.log"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (prefix / "conf" / "nginx.conf").write_text(conf)
    master = subprocess.Popen([_nginx(), "-p", f"{prefix}/", "-c", "conf/nginx.conf"])
    try:
        _wait_listening(port, master, prefix)
        yield Server(port, prefix)
    finally:
        master.send_signal(signal.SIGQUIT)
        try:
            master.wait(10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
    errors = [
        line
        for line in (prefix / "logs" / "error.log").read_text(errors="replace").splitlines()
        if any(f"[{level}]" in line for level in ("crit", "alert", "emerg"))
    ]
    shutil.rmtree(prefix, ignore_errors=True)
    assert not errors, "nginx logged at crit level or worse:\n" + "\n".join(errors)


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1000",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Debian's chromium and chromium-driver are not installed"
        if os.environ.get("PUBSUB_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    if not (ROOT / "clients" / "web" / "node_modules" / "protobufjs").is_dir():
        pytest.fail("clients/web/node_modules missing: run `npm ci --prefix clients/web`")
    os.environ["SE_OFFLINE"] = "true"  # Selenium must never try to download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="apisix-pubsub-chromium.")
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()
        shutil.rmtree(profile, ignore_errors=True)
