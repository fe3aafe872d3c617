"""The email channel: one message per send over SMTP, through the same server, STARTTLS and
sign-in as reports (c360.reports.mailer; `smtp_ca_file` names a private CA).

Each message has a plain-text part and an HTML alternative, From `smtp_from`, and a
Message-ID derived from its idempotency key (a retried message keeps its id, so a receiving
server can drop a copy). `metadata["unsubscribe_url"]` adds List-Unsubscribe and the RFC 8058
one-click List-Unsubscribe-Post header; `metadata["open_pixel_url"]` (given only when the
customer allows open tracking) adds a 1x1 image to the HTML. A 4xx reply is retried; a 5xx
reply to the recipient is a bounce, to anything else a failure. Configured by smtp_host.
Outbound only (replies to emails are not read).
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape
from typing import Any, Literal

from c360.channels.base import EMAIL, OutboundMessage, SendResult
from c360.errors import InputError
from c360.hookspecs import hookimpl
from c360.reports.mailer import check_recipients, not_supported, smtp_session
from c360.settings import Settings

log = logging.getLogger(__name__)

#: A subject made from the text is cut to this many characters (a line a mail client shows).
SUBJECT_CHARS = 78

#: A link c360 puts in a header or an image: http(s), no spaces, quotes or angle brackets
#: (which would end the header's <...> or the HTML attribute early).
_LINK = re.compile(r"^https?://[^\s<>\"']+$")

_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class EmailChannel:
    """Sends each message as one email through the SMTP server in settings."""

    name = EMAIL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: OutboundMessage) -> SendResult:
        """One SMTP conversation for one message."""
        try:
            mail = compose(self.settings.smtp_from, message)
        except InputError as exc:
            return SendResult(status="failed", error=exc.message)
        settings = self.settings
        try:
            with smtp_session(settings) as smtp:
                smtp.send_message(mail, to_addrs=[message.to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b""))
            return _refused(code, reply, "bounced", f"the server refused {message.to}")
        except smtplib.SMTPAuthenticationError as exc:
            return _refused(exc.smtp_code, exc.smtp_error, "failed", _sign_in_refused(settings))
        except smtplib.SMTPResponseException as exc:
            return _refused(exc.smtp_code, exc.smtp_error, "failed", "the server refused it")
        except smtplib.SMTPNotSupportedError as exc:
            return SendResult(status="failed", error=not_supported(settings, exc))
        except ssl.SSLCertVerificationError as exc:
            return SendResult(status="failed", error=_untrusted(settings, exc))
        except (smtplib.SMTPException, OSError) as exc:
            where = f"{settings.smtp_host}:{settings.smtp_port}"
            return SendResult(status="retry", error=f"the SMTP server {where} failed: {exc}")
        return SendResult(status="sent", provider_id=mail["Message-ID"].strip("<>"))

    def route_handlers(self) -> list[Any]:
        """None: replies to emails are not read."""
        return []


@hookimpl
def c360_channels(settings: Settings) -> list[EmailChannel]:
    """The email channel, when an SMTP server is set."""
    return [EmailChannel(settings)] if settings.smtp_host else []


def compose(sender: str, message: OutboundMessage) -> EmailMessage:
    """The email for `message`; InputError when its address or links cannot be sent."""
    check_recipients([message.to])
    mail = EmailMessage()
    mail["Subject"] = _one_line(message.subject or message.text)[:SUBJECT_CHARS]
    mail["From"] = sender
    mail["To"] = message.to
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = message_id(message.idempotency_key, sender)
    unsubscribe = message.metadata.get("unsubscribe_url")
    if unsubscribe:
        mail["List-Unsubscribe"] = f"<{_link(unsubscribe, 'unsubscribe_url')}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.text)
    mail.add_alternative(_html(message), subtype="html")
    return mail


def message_id(idempotency_key: str, sender: str) -> str:
    """A Message-ID that is the same for every attempt of one message."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "c360"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _html(message: OutboundMessage) -> str:
    """The HTML part: the message's own, or its text as paragraphs; with the open pixel when
    the customer allows open tracking."""
    html = message.html or _paragraphs(message.text)
    pixel_url = message.metadata.get("open_pixel_url")
    if not pixel_url:
        return html
    pixel = (
        f'<img src="{escape(_link(pixel_url, "open_pixel_url"))}" width="1" height="1" '
        'alt="" style="display:block;border:0">'
    )
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + pixel
    at = ends[-1].start()
    return html[:at] + pixel + html[at:]


def _paragraphs(text: str) -> str:
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    body = "".join(f"<p>{escape(block).replace(chr(10), '<br>')}</p>" for block in blocks)
    return f"<!DOCTYPE html><html><body>{body}</body></html>"


def _link(url: str, name: str) -> str:
    if not _LINK.match(url):
        raise InputError("invalid_link", f"metadata {name} must be an http(s) URL; got {url!r}")
    return url


def _refused(
    code: int, reply: bytes | str, final: Literal["failed", "bounced"], what: str
) -> SendResult:
    """A reply code's result: 4xx is worth retrying, 5xx is `final` (bounced or failed)."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    error = f"{what}: {code} {' '.join(text.split())}"
    if 400 <= code < 500:
        return SendResult(status="retry", error=error)
    return SendResult(status=final, error=error)


def _sign_in_refused(settings: Settings) -> str:
    return (
        f"the SMTP server refused the sign-in of {settings.smtp_user!r}: check C360_SMTP_USER "
        "and C360_SMTP_PASSWORD"
    )


def _untrusted(settings: Settings, exc: ssl.SSLCertVerificationError) -> str:
    return (
        f"the SMTP server's certificate is not trusted ({exc.verify_message}): set "
        "C360_SMTP_CA_FILE to the PEM file of the authority that signed it"
    )


def _one_line(text: str) -> str:
    """A header value cannot hold line breaks (they would start new headers)."""
    return " ".join(text.split())
