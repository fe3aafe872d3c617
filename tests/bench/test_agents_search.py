"""The search benchmark's relevance builder and metrics, on a few venues worked out by hand:
a request is relevant to exactly the venues of its domain that meet all its constraints."""

from __future__ import annotations

import math

import _agents_search as bench

VENUES = [
    bench.Venue("place:restaurant-1", "restaurant",
                {"name": "pizza hut", "food": "italian", "area": "centre", "pricerange": "cheap"}),
    bench.Venue("place:restaurant-2", "restaurant",
                {"name": "zizzi", "food": "italian", "area": "centre", "pricerange": "moderate"}),
    bench.Venue("place:restaurant-3", "restaurant",
                {"name": "da vinci", "food": "italian", "area": "north", "pricerange": "cheap"}),
    bench.Venue("place:restaurant-4", "restaurant",
                {"name": "golden wok", "food": "chinese", "area": "centre", "pricerange": "cheap"}),
    bench.Venue("place:hotel-1", "hotel",
                {"name": "acorn", "type": "guesthouse", "area": "centre", "stars": "4",
                 "parking": "yes", "internet": "yes", "pricerange": "cheap"}),
    bench.Venue("place:hotel-2", "hotel",
                {"name": "lensfield", "type": "hotel", "area": "centre", "stars": "4",
                 "parking": "no", "internet": "yes", "pricerange": "cheap"}),
]  # fmt: skip


def _request(domain: str, **constraints: str) -> bench.Request:
    return bench.Request(domain, tuple(constraints.items()), "text")


def test_relevant_venues_meet_every_constraint_of_the_requests_domain():
    assert bench.relevant(VENUES, _request("restaurant", food="italian", pricerange="cheap")) == {
        "place:restaurant-1",
        "place:restaurant-3",
    }
    assert bench.relevant(VENUES, _request("restaurant", area="centre", pricerange="cheap")) == {
        "place:restaurant-1",
        "place:restaurant-4",
    }
    # the hotel in the centre with cheap prices is not a restaurant
    assert bench.relevant(VENUES, _request("hotel", area="centre", stars="4", parking="yes")) == {
        "place:hotel-1"
    }
    assert bench.relevant(VENUES, _request("restaurant", food="korean")) == set()


def test_ndcg_and_recall_at_10_by_hand():
    relevant = {"a", "b"}
    # hits at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3)
    assert math.isclose(bench.ndcg_at_10(["a", "x", "b"], relevant), 1.5 / (1 + 1 / math.log2(3)))
    assert bench.ndcg_at_10(["b", "a"], relevant) == 1.0
    assert bench.recall_at_10(["a", "x"], relevant) == 0.5
    # twelve relevant venues: ten found in the first ten is full recall
    many = {str(i) for i in range(12)}
    assert bench.recall_at_10([str(i) for i in range(10)], many) == 1.0
    assert bench.ndcg_at_10([str(i) for i in range(10, 20)], {"0"}) == 0.0


def test_requests_split_by_constraint_set_and_say_every_constraint():
    venues = bench.load_venues()
    dev, test = bench.build_requests(venues)

    assert len(dev) == len(test) == bench.VENUE_SETS // 2 * bench.PHRASINGS
    assert not {r.constraints for r in dev} & {r.constraints for r in test}
    for request in dev + test:
        assert bench.relevant(venues, request)  # every set comes from a real venue
        for key, value in request.constraints:
            if key in ("food",):
                assert value in request.text
    assert bench.build_requests(venues) == (dev, test)  # seeded


def test_a_venue_text_says_its_fields():
    title, body = bench.venue_text(VENUES[4])

    assert title == "acorn"
    assert body.startswith("acorn is a 4-star guest house in the centre, cheap price range.")
    assert "It has free parking and free wifi." in body
