"""Pumps move bus entries to actors: fuller batches for the lake, nothing lost or repeated."""

from __future__ import annotations

import threading

from c360.adapters.bus import RAW_EVENTS
from c360.stages.pump import Pump


def _pump(runtime, sent, **options):
    return Pump(
        runtime.bus,
        RAW_EVENTS,
        "test-group",
        "test-consumer",
        lambda name, payloads: sent.append((name, payloads)),
        lambda: 0,
        options.pop("batch_size", 1000),
        threading.Event(),
        **options,
    )


def _publish(runtime, keys):
    runtime.bus.publish(RAW_EVENTS, [(key, f'{{"k": "{key}"}}'.encode()) for key in keys])


def test_a_lingering_pump_gathers_several_publishes_into_one_batch_across_partitions(runtime):
    sent = []
    pump = _pump(runtime, sent, linger_s=0.5, one_batch=True)
    for round_ in range(3):
        _publish(runtime, [f"user-{round_}-{n}" for n in range(5)])

    moved = pump.step()

    assert moved == 15
    assert len(sent) == 1
    assert sorted(sent[0][1]) == sorted(
        f'{{"k": "user-{r}-{n}"}}' for r in range(3) for n in range(5)
    )
    assert runtime.bus.backlog(RAW_EVENTS, "test-group") == 0


def test_a_batch_of_the_same_entries_always_gets_the_same_name(runtime):
    _publish(runtime, [f"user-{n}" for n in range(8)])
    first, again = [], []
    _pump(runtime, first, linger_s=0.1, one_batch=True).step()
    # the same entries read again, as after a crash before the acknowledgement (here through
    # a second group, which sees every entry afresh)
    other = Pump(
        runtime.bus,
        RAW_EVENTS,
        "other-group",
        "c",
        lambda n, p: again.append((n, p)),
        lambda: 0,
        1000,
        threading.Event(),
        linger_s=0.1,
        one_batch=True,
    )
    other.step()

    assert first[0][0] == again[0][0]


def test_a_pump_cuts_what_it_read_into_batches_that_keep_each_customer_in_order(runtime):
    sent = []
    for round_ in range(3):  # three publishes: each customer's events, in order
        runtime.bus.publish(
            RAW_EVENTS, [(f"user-{n}", f"user-{n} {round_}".encode()) for n in range(20)]
        )

    _pump(runtime, sent, batch_size=25).step()

    assert len(sent) > 1 and all(len(payloads) <= 25 for _name, payloads in sent)
    rounds: dict[str, list[str]] = {}
    for _name, payloads in sent:
        for payload in payloads:
            user, round_ = payload.split()
            rounds.setdefault(user, []).append(round_)
    assert rounds == {f"user-{n}": ["0", "1", "2"] for n in range(20)}
    assert runtime.bus.backlog(RAW_EVENTS, "test-group") == 0
