"""Moves actor messages that exhausted their retries from Dramatiq's dead-letter sets (which
Dramatiq purges after a week) into c360's own `c360-dlq` topic, where they are kept."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

import dramatiq
import redis

from c360.adapters.bus import DLQ, EventBus

log = logging.getLogger(__name__)

#: How often the worker looks for dead actor messages.
DRAIN_INTERVAL_S = 10.0

#: Hash of the latest failure of each actor message still failing, by Dramatiq's redis id:
#: Dramatiq keeps a dead message as it was enqueued, without the error that killed it.
REASONS_KEY = "c360:actor-failures"


class FailureReasons(dramatiq.Middleware):
    """Remembers why an actor message failed, so its dead letter can say so."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        """Record the failure, or forget an earlier one once the message succeeds."""
        message_id = message.options.get("redis_message_id", message.message_id)
        if exception is None:
            if message.options.get("retries"):  # only a retried message can have a reason
                self.client.hdel(REASONS_KEY, message_id)
        else:
            self.client.hset(
                REASONS_KEY, message_id, f"{type(exception).__name__}: {exception}"[:2000]
            )


def drain(
    client: redis.Redis, bus: EventBus, queues: list[str], namespace: str = "dramatiq"
) -> int:
    """Publish each dead message to `c360-dlq`, then remove it from Dramatiq; returns the count."""
    moved = 0
    for queue in queues:
        dead_set = f"{namespace}:{queue}.XQ"
        dead_messages = f"{dead_set}.msgs"
        for message_id in client.zrange(dead_set, 0, 99):
            body = client.hget(dead_messages, message_id)
            reason = client.hget(REASONS_KEY, message_id)
            if body is not None:
                bus.publish(DLQ, [(queue, _dead_letter(queue, body, reason))])
            with client.pipeline() as pipe:
                pipe.zrem(dead_set, message_id)
                pipe.hdel(dead_messages, message_id)
                pipe.hdel(REASONS_KEY, message_id)
                pipe.execute()
            moved += 1
    if moved:
        log.error("Moved %d actor message(s) that kept failing to %r.", moved, DLQ)
    return moved


def run(client: redis.Redis, bus: EventBus, queues: list[str], stop: threading.Event) -> None:
    """Drain every DRAIN_INTERVAL_S until `stop` is set."""
    while not stop.wait(DRAIN_INTERVAL_S):
        try:
            drain(client, bus, queues)
        except redis.RedisError as exc:
            log.warning("Could not drain dead actor messages: %s", exc)


def _dead_letter(queue: str, body: bytes, reason: bytes | None) -> bytes:
    try:
        message = json.loads(body)
    except ValueError:
        message = {"raw": body.decode("utf-8", errors="replace")}
    why = reason.decode(errors="replace") if reason else "no error was recorded"
    entry = {
        "reason": f"stage {queue!r} failed after all retries: {why}",
        "code": "stage_failed",
        "source": queue,
        "receivedAt": datetime.now(UTC).isoformat(),
        "payload": json.dumps(message.get("args") if isinstance(message, dict) else message),
    }
    return json.dumps(entry).encode()
