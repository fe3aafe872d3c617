"""The trial loads the demo catalogue into the marketing knowledge the first time only: a
later trial on the same data folder keeps the prices a marketer changed and the promotions
they deleted (a restart once put both back)."""

from __future__ import annotations

import json
from importlib import resources

from c360.appliance.trial import _load_demo_catalogue
from c360.knowledge import search, store

URL = "http://127.0.0.1:8360"


def _demo() -> list[dict]:
    data = resources.files("c360.knowledge").joinpath("data/demo_catalogue.json").read_bytes()
    parsed = json.loads(data)
    return parsed["items"] if isinstance(parsed, dict) else parsed


def test_the_first_trial_loads_the_catalogue_and_a_later_one_keeps_the_users_changes(runtime):
    demo = _demo()
    product = next(item for item in demo if item["type"] == "product")
    promotion = next(item for item in demo if item["type"] == "promotion")

    page = _load_demo_catalogue(runtime, URL)

    assert page == f"{URL}/chat/demo?userId=cdnow-00001"
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM knowledge.items").fetchone()[0] == len(demo)

    changed = {**product, "attributes": {**product["attributes"], "price": 12_345}}
    store.upsert(runtime, [store.item_from_dict(changed)])
    store.delete(runtime, [promotion["id"]])

    _load_demo_catalogue(runtime, URL)

    assert search.get(runtime, product["id"]).attributes["price"] == 12_345
    assert search.get(runtime, promotion["id"]) is None
