"""Browser tests in real Chromium: one `c360 trial` serving a CDNOW slice for the whole session,
a user of every built-in role created with `c360 users create`, a local SMTP server the trial
sends its scheduled reports to, and the figures the pages must show, computed here from the
same lines of the file with plain Python.

Chromium is Debian's (/usr/bin/chromium), driven by the `playwright` package through
`executable_path`; it is installed with apt-get when missing, as appliance/servers.py does for
Mosquitto. Nothing here imports the code under test to compute an expected number.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from chromium_support import ensure_chromium
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from c360.appliance.engines import EmbeddedValkey
from c360.connectors import cdnow

REPO = Path(__file__).resolve().parents[2]


#: Flags for a headless Chromium in a container: no sandbox (root), no GPU, and nothing that
#: talks to Google's servers on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Purchases replayed: enough for charts and segments with a few hundred customers, small
#: enough that the trial is up in seconds.
SLICE = 2000

#: Longest the trial may take to print its summary, and a stopped trial's processes to exit.
TRIAL_TIMEOUT_S = 300
EXIT_TIMEOUT_S = 30

#: Longest a page may take to show what a test waits for (ms, Playwright's unit).
PAGE_TIMEOUT_MS = 20_000

ROLES = ("admin", "analyst", "marketer", "viewer")


@dataclass(frozen=True)
class Purchase:
    """One line of CDNOW_master.txt."""

    customer: str
    day: str  # YYYY-MM-DD
    dollars: Decimal


@dataclass(frozen=True)
class Expected:
    """What the first SLICE purchases add up to, by a plain parse of the file."""

    purchases: tuple[Purchase, ...]

    @property
    def orders(self) -> int:
        return len(self.purchases)

    @property
    def revenue(self) -> Decimal:
        return sum((p.dollars for p in self.purchases), Decimal(0))

    @property
    def orders_by_customer(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for purchase in self.purchases:
            counts[purchase.customer] = counts.get(purchase.customer, 0) + 1
        return counts

    @property
    def customers(self) -> int:
        return len(self.orders_by_customer)

    def orders_on(self, day: str) -> int:
        return sum(1 for p in self.purchases if p.day == day)

    def repeat_customers(self, at_least: int) -> set[str]:
        """c360 user ids (cdnow-NNNNN) of the customers with at least `at_least` orders."""
        return {f"cdnow-{c}" for c, n in self.orders_by_customer.items() if n >= at_least}


@dataclass
class Mailbox:
    """What the local SMTP server received, as parsed messages."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        """At least `count` messages, or an AssertionError when they do not come in time."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            assert len(self.messages) >= count, f"{len(self.messages)} emails, not {count}"
            return list(self.messages)


@dataclass
class Trial:
    """The serving trial: its address, data folder, summary and users."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    summary: dict[str, Any]
    passwords: dict[str, str] = field(default_factory=dict)

    def user(self, role: str) -> tuple[str, str]:
        """(name, password) of the user with `role`."""
        return f"browser-{role}", self.passwords[role]


def parse_slice(path: Path, limit: int) -> tuple[Purchase, ...]:
    """The first `limit` purchase lines: customer, day (ISO) and dollars as Decimal."""
    purchases = []
    with path.open(encoding="ascii") as handle:
        next(handle)  # header
        for raw in handle:
            fields = raw.split()
            if not fields:
                continue
            customer, day, _cds, dollars = fields
            iso_day = f"{day[:4]}-{day[4:6]}-{day[6:]}"
            purchases.append(Purchase(customer, iso_day, Decimal(dollars)))
            if len(purchases) == limit:
                break
    return tuple(purchases)


@pytest.fixture(scope="session")
def cdnow_file() -> Path:
    """CDNOW_master.txt, fetched once into the repository's (gitignored) fixtures folder."""
    return cdnow.fetch(REPO / "fixtures" / "cdnow")


@pytest.fixture(scope="session")
def expected(cdnow_file: Path) -> Expected:
    return Expected(parse_slice(cdnow_file, SLICE))


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium (tests/chromium_support.py)."""
    return ensure_chromium()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it is sent."""
    box = Mailbox()
    controller = Controller(_Keep(box), hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def trial(
    cdnow_file: Path, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trial]:
    """`c360 trial` serving the slice, sending mail to `mailbox`, with one user per role."""
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    data_dir.mkdir(parents=True)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("C360_")},
        "C360_SMTP_HOST": "127.0.0.1",
        "C360_SMTP_PORT": str(mailbox.port),
        "C360_SMTP_STARTTLS": "false",
    }
    command = [
        *c360_command(),
        "trial",
        "--data-dir",
        str(data_dir),
        "--dataset",
        str(cdnow_file),
        "--limit",
        str(SLICE),
        "--port",
        str(free_port()),
        "--json",
    ]
    stderr_path = data_dir.parent / "trial-stderr.txt"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=environment)
    try:
        summary = _summary(process, stderr_path)
        running = Trial(str(summary["api"]), data_dir, process, summary)
        for role in ROLES:
            running.passwords[role] = create_user(data_dir, f"browser-{role}", role, environment)
        yield running
    finally:
        _stop(process)
        _remove_socket_dir(data_dir)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test, downloads allowed."""
    fresh = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    fresh.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, trial: Trial, role: str, path: str = "/") -> None:
    """Open `path`, get sent to the sign-in form, and sign in as the user with `role`."""
    name, password = trial.user(role)
    page.goto(trial.url + path)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def create_user(data_dir: Path, name: str, role: str, environment: dict[str, str]) -> str:
    """`c360 users create --password-stdin` against the running trial; returns the password."""
    password = f"{role}-browser-passphrase-{os.getpid()}"
    done = subprocess.run(
        [
            *c360_command(),
            "users",
            "create",
            "--data-dir",
            str(data_dir),
            "--name",
            name,
            "--role",
            role,
            "--password-stdin",
        ],
        input=f"{password}\n".encode(),
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return password


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def c360_command() -> list[str]:
    """The `c360` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("c360")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "c360.appliance.cli"]


class _Keep:
    """aiosmtpd handler: accept every message and put it in the mailbox."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        parsed = message_from_bytes(content if isinstance(content, bytes) else content.encode())
        with self.box.arrived:
            self.box.messages.append(parsed)
            self.box.arrived.notify_all()
        return "250 OK"


def _summary(process: subprocess.Popen[bytes], stderr_path: Path) -> dict[str, Any]:
    """The trial's one-line JSON summary (it keeps serving after printing it)."""
    import json

    assert process.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(TRIAL_TIMEOUT_S)
    if not lines or not lines[0].strip():
        raise AssertionError(
            f"c360 trial printed no summary (exit code {process.poll()}): "
            f"{stderr_path.read_text(errors='replace')[-3000:]}"
        )
    return dict(json.loads(lines[0], parse_float=Decimal))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the trial, then SIGKILL it and whatever it left behind."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(EXIT_TIMEOUT_S)
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(psutil.Error):
            child.kill()
    if process.stdout is not None:
        process.stdout.close()


def _remove_socket_dir(data_dir: Path) -> None:
    """c360 keeps the Valkey socket in a short folder under /tmp; tidy it after the session."""
    shutil.rmtree(EmbeddedValkey(data_dir).socket.parent, ignore_errors=True)
