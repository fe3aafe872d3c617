"""The lifetime-value page (/analytics/ltv): the fitted BG/NBD and Gamma-Gamma parameters, the
distribution of predicted value, P(alive), the top customers ahead and those at risk of churn.

Touches no database itself: c360.analytics.ltv fits and predicts.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response, Template

from c360.analytics import drill, ltv
from c360.errors import InputError
from c360.ui.pages.common import (
    ChartView,
    Link,
    TableView,
    csv_response,
    page,
    principal,
    require,
    with_query,
)

#: The query parameters of the page: the model's settings, as c360.analytics.ltv names them.
PARAMETERS = ("horizon_weeks", "discount", "churn_threshold", "top", "as_of")

_CUSTOMER_COLUMNS = (
    "Customer",
    "Purchases",
    "P(alive)",
    "Spend so far",
    "Expected purchases",
    "Predicted value",
)


@get(
    "/analytics/ltv",
    opt={"permission": "analytics:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def ltv_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The LTV report for the settings in the query string (the defaults when none)."""
    data = _report(request, state)
    tables = ltv_tables(request, data)
    context = {
        "data": data,
        "tables": tables,
        "value_chart": _value_chart(data),
        "alive_chart": _alive_chart(data),
        "params": {name: request.query_params.get(name) or "" for name in PARAMETERS},
        "pdf_href": with_query("/export/pdf/ltv", request.query_params),
    }
    return page(request, "ltv.html", "Lifetime value", "ltv", context)


@get(
    "/export/csv/ltv/{table:str}",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def ltv_csv(request: Request[Any, Any, Any], state: State, table: FromPath[str]) -> Response:
    """One table of the page as CSV: value, alive, top or churn."""
    require(request, "analytics:read")
    tables = ltv_tables(request, _report(request, state))
    if table not in tables:
        raise InputError("unknown_table", f"the LTV tables are {', '.join(tables)}")
    view = tables[table]
    return csv_response(f"ltv-{table}.csv", view.columns, view.rows)


HANDLERS = [ltv_page, ltv_csv]


def ltv_tables(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, TableView]:
    """The page's tables by name: value and P(alive) distributions, top, churn risk."""
    params = request.query_params
    return {
        "value": TableView(
            id="ltv-value",
            caption=f"Customers by value predicted over {data['horizon_weeks']} weeks",
            columns=("From", "To", "Customers"),
            rows=[[b["from"], b["to"], b["customers"]] for b in data["value_histogram"]],
            csv_href=with_query("/export/csv/ltv/value", params),
            numeric=frozenset({0, 1, 2}),
        ),
        "alive": TableView(
            id="ltv-alive",
            caption="Customers by probability of being alive",
            columns=("From", "To", "Customers"),
            rows=[[b["from"], b["to"], b["customers"]] for b in data["alive_histogram"]],
            csv_href=with_query("/export/csv/ltv/alive", params),
            numeric=frozenset({0, 1, 2}),
        ),
        "top": TableView(
            id="ltv-top",
            caption="Most valuable customers ahead",
            columns=_CUSTOMER_COLUMNS,
            rows=[_customer_row(c) for c in data["top_customers"]],
            csv_href=with_query("/export/csv/ltv/top", params),
            numeric=frozenset({1, 2, 3, 4, 5}),
        ),
        "churn": TableView(
            id="ltv-churn",
            caption=f"At risk of churn: P(alive) under {data['churn_threshold']}, biggest "
            "past spenders first",
            columns=_CUSTOMER_COLUMNS,
            rows=[_customer_row(c) for c in data["churn_risk"]["customers"]],
            csv_href=with_query("/export/csv/ltv/churn", params),
            numeric=frozenset({1, 2, 3, 4, 5}),
        ),
    }


def _report(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """The report for the page's parameters, as the reader may see it: userIds masked by the
    access policies (those shown audited), after the cache."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(PARAMETERS))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; the known ones are "
            f"{', '.join(PARAMETERS)}",
        )
    checked = ltv.check_params({k: v for k, v in params.items() if v not in ("", None)})
    data = ltv.ltv_report(
        state.runtime,
        checked.horizon_weeks,
        checked.discount,
        checked.churn_threshold,
        checked.top,
        checked.as_of,
    )
    who = principal(request)
    if who is None:
        raise InputError("not_signed_in", "sign in first")
    return ltv.for_principal(data, who, state.runtime, f"ui:{request.url.path}")


def _customer_row(customer: dict[str, Any]) -> list[Any]:
    return [
        Link(drill.customer_label(customer), f"/customers/{customer['profile_id']}"),
        customer["frequency"] + 1,  # repeat purchases plus the first
        customer["p_alive"],
        customer["total_spend"],
        customer["expected_purchases"],
        customer["predicted_value"],
    ]


def _value_chart(data: dict[str, Any]) -> ChartView:
    buckets = data["value_histogram"]
    return ChartView(
        id="chart-ltv-value",
        caption="Customers by predicted value",
        kind="bar",
        labels=[_bucket(b["from"], b["to"]) for b in buckets],
        series={"Customers": [b["customers"] for b in buckets]},
    )


def _alive_chart(data: dict[str, Any]) -> ChartView:
    buckets = data["alive_histogram"]
    return ChartView(
        id="chart-ltv-alive",
        caption="Customers by P(alive)",
        kind="bar",
        labels=[f"{b['from']:.1f}–{b['to']:.1f}" for b in buckets],
        series={"Customers": [b["customers"] for b in buckets]},
    )


def _bucket(low: Any, high: Any) -> str:
    return f"{low:,}+" if high is None else f"{low:,}–{high:,}"
