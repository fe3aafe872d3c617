"""CSV downloads name their charset once: `text/csv; charset=utf-8` (Litestar adds the charset
to a text type itself, so a media type that already carried one was sent with two)."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.testing import TestClient

from c360 import accounts
from c360.api.app import create_app
from c360.ui.pages.common import csv_response

PASSWORD = "correct horse battery"
DOUBLE = "double-submit-token-for-tests"


@get("/table.csv", sync_to_thread=False)
def _table() -> object:
    return csv_response("table.csv", ["a", "b"], [[1, 2]])


def test_a_page_s_csv_download_names_its_charset_once() -> None:
    with TestClient(app=Litestar(route_handlers=[_table])) as client:
        answer = client.get("/table.csv")

    assert answer.headers["content-type"] == "text/csv; charset=utf-8"


def test_the_segment_export_names_its_charset_once(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "user:test", "root", "admin", PASSWORD)
    with TestClient(app=create_app(runtime.settings)) as client:
        client.cookies.set("c360_csrf", DOUBLE)
        signed = client.post(
            "/v1/session",
            json={"name": "root", "password": PASSWORD},
            headers={"X-CSRF-Token": DOUBLE},
        )
        answer = client.post(
            "/v1/segments/export.csv",
            json={"spec": {"field": "order_count", "op": ">=", "value": 0}},
            headers={"X-CSRF-Token": signed.json()["csrf_token"]},
        )

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
