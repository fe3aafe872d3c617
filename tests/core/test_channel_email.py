"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1 that demands STARTTLS
with a certificate from a private authority made in the test (`cryptography`): the message
goes over TLS verified with `smtp_ca_file`, with a text part and an HTML alternative, a
Message-ID fixed by its key, RFC 8058 one-click unsubscribe headers, and an open pixel only
when asked; an untrusted certificate, a server without STARTTLS, a busy server (4xx), a
refused recipient (5xx) and a server that is down each end as they should."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from c360.channels import delivery
from c360.channels.base import OutboundMessage
from c360.errors import SettingsError
from c360.reports import mailer
from c360.reports.model import Report, Text
from c360.runtime import Runtime
from c360.settings import load_settings

SENDER = "Shop Lan <news@shop.example>"
UNSUBSCRIBE = "https://c360.example/u/abc123"
PIXEL = "https://c360.example/o/abc123.gif"


class Mailbox:
    """An aiosmtpd handler: keeps what arrives and whether it came over TLS; refuses
    `bounce` recipients (550) and answers 451 to the next `busy` messages."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage, bool]] = []
        self.bounce: set[str] = set()
        self.busy = 0
        #: how QUIT ends: None (221 Bye), "refuse" (421), "drop" (no answer) or "stall"
        self.quit: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        if address in self.bounce:
            return f"550 5.1.1 <{address}>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.busy:
            self.busy -= 1
            return "451 4.3.0 try again later"
        mail = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((list(envelope.rcpt_tos), mail, session.ssl is not None))
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope) -> str | None:
        if self.quit == "stall":
            await asyncio.sleep(2)
        elif self.quit == "drop":
            server.transport.close()
        elif self.quit == "refuse":
            return "421 4.3.2 shutting down"
        return "221 Bye"


@dataclasses.dataclass
class Authority:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A private certificate authority and a server certificate for 127.0.0.1 it signed."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c360 test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    server = (
        _builder(server_name, ca_name, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return Authority(ca_file, context)


def _builder(subject, issuer, public_key, now: dt.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _start(handler: Mailbox, **kwargs: Any) -> tuple[Controller, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def mailbox(runtime: Runtime, authority: Authority) -> Iterator[Mailbox]:
    """An SMTP server that refuses mail before STARTTLS, and settings that trust its CA."""
    handler = Mailbox()
    controller, port = _start(handler, tls_context=authority.server_context, require_starttls=True)
    runtime.settings = dataclasses.replace(
        runtime.settings,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=True,
        smtp_ca_file=str(authority.ca_file),
        smtp_from=SENDER,
    )
    try:
        yield handler
    finally:
        controller.stop()


def email(key: str = "e-1", to: str = "lan@example.com", **metadata: str) -> OutboundMessage:
    return OutboundMessage(
        channel="email",
        to=to,
        text="Xin chào Lan,\n\nĐơn hàng A-17 đã được giao.\nCảm ơn bạn!",
        subject="Đơn hàng A-17 đã giao",
        idempotency_key=key,
        purpose="orders",
        metadata=metadata,
    )


def test_a_message_goes_over_starttls_with_text_html_and_a_stable_message_id(
    runtime: Runtime, mailbox: Mailbox
):
    sent = delivery.send_now(runtime, email())

    assert sent.status == "sent"
    [(recipients, mail, over_tls)] = mailbox.received
    assert over_tls and recipients == ["lan@example.com"]
    assert mail["From"] == SENDER and mail["To"] == "lan@example.com"
    assert mail["Subject"] == "Đơn hàng A-17 đã giao"
    digest = hashlib.sha256(b"e-1").hexdigest()[:32]
    assert mail["Message-ID"] == f"<{digest}@shop.example>"
    assert sent.provider_id == f"{digest}@shop.example"
    assert mail.get_content_type() == "multipart/alternative"
    # SMTP carries lines ending in CRLF
    plain = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",)).get_content()
    expected_plain = "Xin chào Lan,\n\nĐơn hàng A-17 đã được giao.\nCảm ơn bạn!"
    assert plain.strip() == expected_plain
    assert "<p>Xin chào Lan,</p>" in html
    assert "<p>Đơn hàng A-17 đã được giao.<br>Cảm ơn bạn!</p>" in html
    assert "List-Unsubscribe" not in mail and "<img" not in html


def test_one_click_unsubscribe_headers_follow_rfc_8058(runtime: Runtime, mailbox: Mailbox):
    delivery.send_now(runtime, email(unsubscribe_url=UNSUBSCRIBE))

    [(_, mail, _)] = mailbox.received
    assert mail["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_open_pixel_is_added_only_when_asked(runtime: Runtime, mailbox: Mailbox):
    delivery.send_now(runtime, email("e-1", open_pixel_url=PIXEL))
    own_html = dataclasses.replace(
        email("e-2", open_pixel_url=PIXEL), html="<html><body><h1>Hi</h1></body></html>"
    )
    delivery.send_now(runtime, own_html)

    tracked, own = (mail.get_body(("html",)).get_content() for _, mail, _ in mailbox.received)
    pixel = f'<img src="{PIXEL}" width="1" height="1" alt=""'
    assert tracked.count(pixel) == 1
    assert own.startswith("<html><body><h1>Hi</h1>" + pixel) and own.rstrip().endswith(
        "</body></html>"
    )
    assert PIXEL not in mailbox.received[0][1].get_body(("plain",)).get_content()


def test_the_same_key_is_mailed_once(runtime: Runtime, mailbox: Mailbox):
    delivery.send_now(runtime, email())
    delivery.send_now(runtime, email())

    assert len(mailbox.received) == 1


@pytest.mark.parametrize("quit_ends", ["refuse", "drop", "stall"])
def test_a_message_the_server_accepted_is_sent_whatever_quit_gets(
    runtime: Runtime, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, quit_ends: str
):
    # smtplib's own `with` raises when QUIT is refused or times out after the 250 to DATA:
    # taken for a failed send, the message was marked failed or sent a second time
    monkeypatch.setattr(mailer, "SMTP_TIMEOUT_S", 0.5)
    mailbox.quit = quit_ends

    row = delivery.send_now(runtime, email())
    delivery.run_due(runtime, now=datetime_after(delivery.RETRY_MAX))

    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert len(mailbox.received) == 1


def test_a_report_the_server_accepted_is_not_an_error_when_quit_is_refused(
    runtime: Runtime, mailbox: Mailbox
):
    mailbox.quit = "refuse"
    report = Report("Weekly revenue", sections=[Text("Revenue rose.")])

    mailer.send_report(runtime.settings, ["lan@example.com"], report, b"%PDF-1.4", "Weekly")

    [(recipients, mail, _)] = mailbox.received
    assert recipients == ["lan@example.com"] and mail["Subject"] == "Weekly: Weekly revenue"


def test_a_send_never_recorded_goes_again_with_the_same_message_id(
    runtime: Runtime, mailbox: Mailbox
):
    sent = delivery.send_now(runtime, email())
    # what a worker killed between the server's 250 and the record leaves behind
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE channels.deliveries SET status = 'sending', lease_until = %s"
            " WHERE delivery_id = %s",
            (datetime_after(-delivery.LEASE), sent.delivery_id),
        )

    assert delivery.run_due(runtime) == 1

    first, second = (mail for _, mail, _ in mailbox.received)
    assert first["Message-ID"] == second["Message-ID"]  # a receiver can tell it is one message
    assert delivery.get(runtime, sent.delivery_id).status == "sent"


def datetime_after(wait: dt.timedelta) -> dt.datetime:
    """A moment past every retry the outbox would have scheduled by then."""
    return dt.datetime.now(dt.UTC) + wait


def test_a_busy_server_is_retried_and_a_refused_recipient_bounces(
    runtime: Runtime, mailbox: Mailbox
):
    mailbox.busy = 1
    mailbox.bounce.add("gone@example.com")

    busy = delivery.send_now(runtime, email("e-1"))
    gone = delivery.send_now(runtime, email("e-2", to="gone@example.com"))

    assert busy.status == "pending" and "451" in busy.last_error
    assert gone.status == "bounced"
    assert "550 5.1.1" in gone.last_error and "gone@example.com" in gone.last_error
    delivery.run_due(runtime, now=busy.next_attempt_at)
    assert delivery.get(runtime, busy.delivery_id).status == "sent"
    assert [rcpts for rcpts, _, _ in mailbox.received] == [["lan@example.com"]]


def test_an_untrusted_certificate_fails_naming_the_ca_setting(runtime: Runtime, mailbox: Mailbox):
    runtime.settings = dataclasses.replace(runtime.settings, smtp_ca_file=None)

    row = delivery.send_now(runtime, email())

    assert row.status == "failed" and "C360_SMTP_CA_FILE" in row.last_error
    assert mailbox.received == []


def test_a_server_without_starttls_fails_naming_the_setting(runtime: Runtime):
    handler = Mailbox()
    controller, port = _start(handler)
    try:
        runtime.settings = dataclasses.replace(
            runtime.settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=True
        )
        row = delivery.send_now(runtime, email())
    finally:
        controller.stop()

    assert row.status == "failed" and "C360_SMTP_STARTTLS" in row.last_error
    assert handler.received == []


def test_a_non_ascii_address_on_a_server_without_smtputf8_says_so(runtime: Runtime):
    handler = Mailbox()
    controller, port = _start(handler, enable_SMTPUTF8=False)
    try:
        runtime.settings = dataclasses.replace(
            runtime.settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False
        )
        row = delivery.send_now(runtime, email(to="nguyễn@ví-dụ.vn"))
    finally:
        controller.stop()

    assert row.status == "failed" and "SMTPUTF8" in row.last_error
    assert "STARTTLS" not in row.last_error  # STARTTLS is off: that is not the fault
    assert handler.received == []


def test_a_server_that_is_down_is_retried(runtime: Runtime):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe is closed
    runtime.settings = dataclasses.replace(runtime.settings, smtp_host="127.0.0.1", smtp_port=port)

    row = delivery.send_now(runtime, email())

    assert row.status == "pending" and f"127.0.0.1:{port}" in row.last_error


def test_a_bad_address_or_link_fails_without_reaching_the_server(
    runtime: Runtime, mailbox: Mailbox
):
    bad_address = delivery.send_now(runtime, email("e-1", to="lan@example.com\nBcc: x@y.z"))
    bad_link = delivery.send_now(runtime, email("e-2", unsubscribe_url="javascript:alert(1)"))

    assert bad_address.status == bad_link.status == "failed"
    assert "not an e-mail address" in bad_address.last_error
    assert "unsubscribe_url must be an http(s) URL" in bad_link.last_error
    assert mailbox.received == []


def test_a_ca_file_that_does_not_exist_is_a_settings_error(tmp_path: Path):
    with pytest.raises(SettingsError, match="C360_SMTP_CA_FILE"):
        load_settings({"smtp_ca_file": str(tmp_path / "missing.pem")}, environ={})
