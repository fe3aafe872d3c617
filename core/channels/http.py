"""What the HTTP channels (SMS, Zalo, push, webhooks) share: one client per channel, and the
rule that turns a provider's answer into a SendResult (2xx sent, 429 and 5xx retry after
Retry-After, timeouts and refused connections retry, other 4xx fail). Touches nothing.
"""

from __future__ import annotations

import email.utils
import logging
from datetime import UTC, datetime

import httpx

from c360.channels.base import SendResult

log = logging.getLogger(__name__)

#: Longest one send may take before it counts as a timeout and is retried: a provider that
#: slow is overloaded, and the delivery sender has other messages waiting.
SEND_TIMEOUT_S = 15.0

#: Most seconds a provider's Retry-After is honoured for; a larger value is a provider's bug
#: and would park the message for days.
MAX_RETRY_AFTER_S = 3_600.0


def client() -> httpx.Client:
    """A client for one channel's sends; it keeps connections to the provider open."""
    return httpx.Client(timeout=SEND_TIMEOUT_S, follow_redirects=False)


def outage(provider: str, exc: httpx.HTTPError) -> SendResult:
    """The result of a send that got no answer: worth retrying."""
    log.warning("Could not reach %s: %s.", provider, exc)
    return SendResult(status="retry", error=f"{provider} could not be reached: {exc}")


def refusal(provider: str, response: httpx.Response, detail: str) -> SendResult:
    """The result of a non-2xx answer: retry on 408, 429 and 5xx, else fail for good."""
    status = response.status_code
    error = f"{provider} answered {status}: {detail}"
    if status in (408, 429) or status >= 500:
        return SendResult(status="retry", error=error, retry_after_s=retry_after(response))
    return SendResult(status="failed", error=error)


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds the provider asked us to wait (Retry-After as seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def short(text: str, limit: int = 300) -> str:
    """A provider's answer cut to a length fit for an error column and a log line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
