"""Customer lifetime value: each live profile's purchase history summarised in SQL, BG/NBD and
Gamma-Gamma fitted on it (c360.analytics.clv), and the report the LTV page, the API and the
PDF show: the fitted parameters, the distribution of predicted value, P(alive), top customers
and customers at risk of churning.

Computed on the profile store (PostgreSQL), because only the store knows which events belong
to which merged profile. A purchase is an `Order Completed` event with revenue above zero
(a free order carries no spend); purchases are counted by UTC day, as the models assume one
transaction per period at most:
- frequency: purchase days after the first (repeat purchases);
- recency: weeks from the first to the last purchase day;
- T: weeks from the first purchase day to the `as_of` day (default: the latest purchase day);
- monetary: the mean value of the repeat purchase days (0 without one), as Gamma-Gamma needs.

The fitted report is cached in Valkey under the analytics data version (c360.analytics.cache),
so a page view does not refit until new data arrives. Touches: reads PostgreSQL; writes only
the analytics cache.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Any

import numpy as np

from c360.access import Principal
from c360.analytics import cache, clv, drill
from c360.analytics.overview import ORDER_SQL
from c360.errors import InputError
from c360.reports import registry
from c360.reports.model import Chart, Report, Table, Text
from c360.runtime import Runtime

#: Defaults: a year ahead, discounted at 10% a year (a common cost of capital).
HORIZON_WEEKS = 52
ANNUAL_DISCOUNT = 0.10
#: A customer less likely than this to still be active is at risk of churning.
CHURN_THRESHOLD = 0.5
TOP = 20

#: Longest horizon: ten years; BG/NBD forecasts further out are guesses.
MAX_HORIZON_WEEKS = 520
MAX_TOP = 1000

#: Value tiers by rank of predicted value: (name, share of customers up to and including it).
TIERS = (("top 5%", 0.05), ("next 15%", 0.20), ("next 30%", 0.50), ("bottom 50%", 1.0))
#: Buckets of the value histogram below the 99th percentile; one open bucket holds the rest.
VALUE_BUCKETS = 10
ALIVE_BUCKETS = 10

CENT = Decimal("0.01")
_WEEK_DAYS = 7.0

#: Per live profile: purchase days, first and last, and the repeat days' value.
SUMMARY_SQL = f"""
WITH orders AS (
    SELECT e.profile_id, (e.event_time AT TIME ZONE 'UTC')::date AS day, e.revenue
    FROM events e JOIN profiles p ON p.profile_id = e.profile_id
    WHERE p.merged_into IS NULL AND {ORDER_SQL} AND e.revenue > 0
      AND e.event_time < %(end)s
), days AS (
    SELECT profile_id, day, sum(revenue) AS value,
           row_number() OVER (PARTITION BY profile_id ORDER BY day) AS n
    FROM orders GROUP BY profile_id, day
)
SELECT d.profile_id::text, count(*) - 1 AS frequency,
       max(d.day) - min(d.day) AS recency_days,
       %(as_of)s::date - min(d.day) AS age_days,
       coalesce(sum(d.value) FILTER (WHERE d.n > 1) / nullif(count(*) - 1, 0), 0) AS monetary,
       sum(d.value) AS total,
       (SELECT i.id_value FROM identifiers i WHERE i.profile_id = d.profile_id
         AND i.id_type = 'user_id' ORDER BY i.first_seen, i.id_value LIMIT 1) AS user_id
FROM days d GROUP BY d.profile_id ORDER BY d.profile_id
"""

LATEST_SQL = f"""
SELECT max(e.event_time) FROM events e JOIN profiles p ON p.profile_id = e.profile_id
WHERE p.merged_into IS NULL AND {ORDER_SQL} AND e.revenue > 0
"""


@dataclass(frozen=True)
class RfmSummary:
    """One entry per customer (live profile with a purchase), in profile id order."""

    as_of: date | None
    profile_ids: list[str]
    user_ids: list[str | None]
    frequency: list[int]
    recency: list[float]  # weeks
    T: list[float]  # weeks
    monetary: list[Decimal]  # mean value of the repeat purchase days
    total: list[Decimal]  # everything the customer spent

    def __len__(self) -> int:
        return len(self.profile_ids)


@dataclass(frozen=True)
class LtvParams:
    """What an LTV report is computed for (checked)."""

    horizon_weeks: int = HORIZON_WEEKS
    discount: float = ANNUAL_DISCOUNT  # per year
    churn_threshold: float = CHURN_THRESHOLD
    top: int = TOP
    as_of: date | None = None


def rfm_summary(runtime: Runtime, as_of: date | None = None) -> RfmSummary:
    """Every customer's frequency, recency, T and monetary value up to the end of `as_of`
    (a UTC day; default the latest purchase day in the store)."""
    with runtime.pool.connection() as conn:
        day = as_of or _latest_purchase_day(conn)
        if day is None:
            return RfmSummary(None, [], [], [], [], [], [], [])
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        rows = conn.execute(SUMMARY_SQL, {"as_of": day, "end": end}).fetchall()
    return RfmSummary(
        as_of=day,
        profile_ids=[row[0] for row in rows],
        user_ids=[row[6] for row in rows],
        frequency=[int(row[1]) for row in rows],
        recency=[row[2] / _WEEK_DAYS for row in rows],
        T=[row[3] / _WEEK_DAYS for row in rows],
        monetary=[Decimal(row[4]) for row in rows],
        total=[Decimal(row[5]) for row in rows],
    )


def ltv_report(
    runtime: Runtime,
    horizon_weeks: int = HORIZON_WEEKS,
    discount: float = ANNUAL_DISCOUNT,
    churn_threshold: float = CHURN_THRESHOLD,
    top: int = TOP,
    as_of: date | None = None,
) -> dict[str, Any]:
    """The LTV report (see `compute_ltv`), from the cache when the data has not changed."""
    params = check_params(
        {
            "horizon_weeks": horizon_weeks,
            "discount": discount,
            "churn_threshold": churn_threshold,
            "top": top,
            "as_of": as_of.isoformat() if as_of else None,
        }
    )
    key = {**asdict(params), "as_of": params.as_of.isoformat() if params.as_of else None}
    report: dict[str, Any] = cache.cached(runtime, "ltv", key, lambda: compute_ltv(runtime, params))
    return report


def compute_ltv(runtime: Runtime, params: LtvParams) -> dict[str, Any]:
    """Fit both models on the RFM summary and describe the predicted value. `fitted` is false
    (with the reason) when the data cannot support a fit yet, e.g. nobody bought twice."""
    summary = rfm_summary(runtime, params.as_of)
    head = _head(summary, params)
    try:
        bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
        gg = clv.fit_gamma_gamma(summary.frequency, [float(m) for m in summary.monetary])
    except clv.ModelInputError as exc:
        return {**head, **_empty(), "fitted": False, "reason": exc.message}
    predictions = _predict(summary, params, bgnbd, gg)
    return {
        **head,
        "fitted": True,
        "reason": None,
        "bgnbd": {**_rounded(bgnbd.params()), "log_likelihood": round(bgnbd.log_likelihood, 3)},
        "gamma_gamma": {**_rounded(gg.params()), "log_likelihood": round(gg.log_likelihood, 3)},
        **_distribution(predictions["value"]),
        "alive_histogram": _alive_histogram(predictions["alive"]),
        "top_customers": _top(summary, predictions, params.top),
        "churn_risk": _churn(summary, predictions, params),
    }


def check_params(raw: dict[str, Any]) -> LtvParams:
    """LtvParams from plain values (a query string's or a saved report's), each checked with a
    message saying the fix."""
    unknown = sorted(set(raw) - set(LtvParams.__dataclass_fields__))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown LTV parameter {', '.join(unknown)}; the known ones are "
            f"{', '.join(LtvParams.__dataclass_fields__)}",
        )
    return LtvParams(
        horizon_weeks=_whole(
            raw.get("horizon_weeks", HORIZON_WEEKS), "horizon_weeks", 1, MAX_HORIZON_WEEKS
        ),
        discount=_fraction(raw.get("discount", ANNUAL_DISCOUNT), "discount", zero_ok=True),
        churn_threshold=_fraction(
            raw.get("churn_threshold", CHURN_THRESHOLD), "churn_threshold", zero_ok=False
        ),
        top=_whole(raw.get("top", TOP), "top", 1, MAX_TOP),
        as_of=_day(raw.get("as_of")),
    )


def for_principal(
    report: dict[str, Any],
    principal: Principal | None,
    runtime: Runtime | None = None,
    via: str = "api:/v1/reports/ltv",
) -> dict[str, Any]:
    """The report as `principal` may see it: userIds (the identifier `id_user_id`, which can
    be an e-mail address) masked by the access policies as the profile API masks them, and
    those shown unmasked recorded as a PII read through `via`; profile ids always, as the
    drill-down key. Applied after the cache. Without `runtime` (no policies to read) a
    userId shows only with pii:read."""
    if runtime is None:
        return report if principal is not None and principal.can("pii:read") else _hidden(report)
    top, churn = report["top_customers"], report["churn_risk"]["customers"]
    rows = drill.for_principal(runtime, principal, [*top, *churn], via)
    return {
        **report,
        "top_customers": rows[: len(top)],
        "churn_risk": {**report["churn_risk"], "customers": rows[len(top) :]},
    }


def build_ltv_report(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """The `ltv` report kind: the LTV page as a printable report."""
    checked = check_params(params)
    data = for_principal(
        ltv_report(
            runtime,
            checked.horizon_weeks,
            checked.discount,
            checked.churn_threshold,
            checked.top,
            checked.as_of,
        ),
        principal,
        runtime,
        "export:report/ltv",
    )
    return Report(
        title="Customer lifetime value",
        subtitle=f"next {checked.horizon_weeks} weeks, {checked.discount:.0%} a year discount, "
        f"data to {data['as_of'] or 'no purchases yet'}",
        sections=_sections(data),
    )


def _hidden(report: dict[str, Any]) -> dict[str, Any]:
    hidden = dict(report)
    hidden["top_customers"] = [{**row, "user_id": None} for row in report["top_customers"]]
    churn = dict(report["churn_risk"])
    churn["customers"] = [{**row, "user_id": None} for row in churn["customers"]]
    hidden["churn_risk"] = churn
    return hidden


def _latest_purchase_day(conn: Any) -> date | None:
    row = conn.execute(LATEST_SQL).fetchone()
    moment: datetime | None = row[0] if row else None
    return moment.astimezone(UTC).date() if moment else None


def _predict(
    summary: RfmSummary, params: LtvParams, bgnbd: clv.BgNbd, gg: clv.GammaGamma
) -> dict[str, Any]:
    """Per customer: P(alive), expected purchases over the horizon, discounted value."""
    args = (summary.frequency, summary.recency, summary.T)
    monetary = [float(m) for m in summary.monetary]
    weekly = (1 + params.discount) ** (1 / 52) - 1
    return {
        "alive": clv.probability_alive(bgnbd, *args),
        "purchases": clv.expected_purchases(bgnbd, params.horizon_weeks, *args),
        "spend": clv.expected_average_value(gg, summary.frequency, monetary),
        "value": clv.lifetime_value(bgnbd, gg, *args, monetary, params.horizon_weeks, weekly),
    }


def _head(summary: RfmSummary, params: LtvParams) -> dict[str, Any]:
    return {
        "as_of": summary.as_of.isoformat() if summary.as_of else None,
        "horizon_weeks": params.horizon_weeks,
        "discount": params.discount,
        "churn_threshold": params.churn_threshold,
        "customers": len(summary),
        "repeat_customers": sum(1 for f in summary.frequency if f > 0),
        "historical_revenue": sum(summary.total, Decimal(0)),
    }


def _empty() -> dict[str, Any]:
    return {
        "bgnbd": None,
        "gamma_gamma": None,
        "predicted_total": Decimal(0),
        "predicted_mean": Decimal(0),
        "value_histogram": [],
        "value_tiers": [],
        "alive_histogram": [],
        "top_customers": [],
        "churn_risk": {"customers_at_risk": 0, "revenue_at_risk": Decimal(0), "customers": []},
    }


def _distribution(values: np.ndarray) -> dict[str, Any]:
    """Totals, a histogram with round bucket edges, and value tiers by rank."""
    total = float(values.sum())
    return {
        "predicted_total": _money(total),
        "predicted_mean": _money(total / len(values)),
        "value_histogram": _value_histogram(values),
        "value_tiers": _tiers(values, total),
    }


def _value_histogram(values: np.ndarray) -> list[dict[str, Any]]:
    """Equal buckets with round edges up to the 99th percentile, then one open bucket, so a
    few very valuable customers do not squash every other bar into the first."""
    ceiling = float(np.quantile(values, 0.99))
    step = _round_step(ceiling / VALUE_BUCKETS) if ceiling > 0 else 1.0
    edges = [step * k for k in range(VALUE_BUCKETS + 1)]
    buckets = []
    for low, high in pairwise(edges):
        count = int(((values >= low) & (values < high)).sum())
        buckets.append({"from": _money(low), "to": _money(high), "customers": count})
    buckets.append(
        {"from": _money(edges[-1]), "to": None, "customers": int((values >= edges[-1]).sum())}
    )
    return buckets


def _round_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    power = 10 ** math.floor(math.log10(raw))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= raw)


def _tiers(values: np.ndarray, total: float) -> list[dict[str, Any]]:
    ordered = np.sort(values)[::-1]
    tiers, start = [], 0
    for name, share in TIERS:
        end = max(start, math.ceil(share * len(ordered)))
        chunk = ordered[start:end]
        value = float(chunk.sum())
        tiers.append(
            {
                "tier": name,
                "customers": len(chunk),
                "min_value": _money(float(chunk.min())) if len(chunk) else None,
                "max_value": _money(float(chunk.max())) if len(chunk) else None,
                "value": _money(value),
                "share_of_value": round(value / total, 4) if total > 0 else 0.0,
            }
        )
        start = end
    return tiers


def _alive_histogram(alive: np.ndarray) -> list[dict[str, Any]]:
    """Customers by P(alive) in tenths; 1.0 falls in the last bucket."""
    index = np.minimum((alive * ALIVE_BUCKETS).astype(int), ALIVE_BUCKETS - 1)
    counts = np.bincount(index, minlength=ALIVE_BUCKETS)
    return [
        {"from": k / ALIVE_BUCKETS, "to": (k + 1) / ALIVE_BUCKETS, "customers": int(counts[k])}
        for k in range(ALIVE_BUCKETS)
    ]


def _customer(summary: RfmSummary, predictions: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        "profile_id": summary.profile_ids[i],
        "user_id": summary.user_ids[i],
        "frequency": summary.frequency[i],
        "recency_weeks": round(summary.recency[i], 4),
        "T_weeks": round(summary.T[i], 4),
        "monetary": summary.monetary[i].quantize(CENT, ROUND_HALF_EVEN),
        "total_spend": summary.total[i],
        "p_alive": round(float(predictions["alive"][i]), 4),
        "expected_purchases": round(float(predictions["purchases"][i]), 4),
        "expected_spend": _money(float(predictions["spend"][i])),
        "predicted_value": _money(float(predictions["value"][i])),
    }


def _top(summary: RfmSummary, predictions: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The most valuable customers ahead, ties by profile id so the list is stable."""
    order = sorted(range(len(summary)), key=lambda i: (-predictions["value"][i], i))
    return [_customer(summary, predictions, i) for i in order[:top]]


def _churn(summary: RfmSummary, predictions: dict[str, Any], params: LtvParams) -> dict[str, Any]:
    """Customers whose P(alive) is under the threshold, the biggest past spenders first."""
    alive = predictions["alive"]
    at_risk = [i for i in range(len(summary)) if alive[i] < params.churn_threshold]
    at_risk.sort(key=lambda i: (-summary.total[i], i))
    return {
        "customers_at_risk": len(at_risk),
        "revenue_at_risk": sum((summary.total[i] for i in at_risk), Decimal(0)),
        "customers": [_customer(summary, predictions, i) for i in at_risk[: params.top]],
    }


def _sections(data: dict[str, Any]) -> list[Any]:
    """The report's sections: parameters, distributions and the two customer tables."""
    if not data["fitted"]:
        return [Text(f"{data['customers']} customers. {data['reason']}")]
    bg, gg = data["bgnbd"], data["gamma_gamma"]
    customer_columns = ["profile", "user", "purchases", "P(alive)", "spend", "predicted value"]

    def rows(customers: list[dict[str, Any]]) -> list[list[Any]]:
        return [
            [
                c["profile_id"],
                c["user_id"] or "",
                c["frequency"] + 1,
                f"{c['p_alive']:.3f}",
                c["total_spend"],
                c["predicted_value"],
            ]
            for c in customers
        ]

    return [
        Text(
            f"{data['customers']:,} customers ({data['repeat_customers']:,} bought more than "
            f"once), {data['historical_revenue']} spent so far; predicted value "
            f"{data['predicted_total']} in total, {data['predicted_mean']} per customer."
        ),
        Table(
            ["model", "parameters", "log-likelihood"],
            [
                ["BG/NBD", _params_text(bg, ("r", "alpha", "a", "b")), bg["log_likelihood"]],
                ["Gamma-Gamma", _params_text(gg, ("p", "q", "v")), gg["log_likelihood"]],
            ],
            caption="Fitted models",
        ),
        Chart(
            "bar",
            [_bucket_label(b) for b in data["value_histogram"]],
            {"customers": [b["customers"] for b in data["value_histogram"]]},
            caption="Customers by predicted value",
        ),
        Table(
            ["tier", "customers", "from", "to", "value", "share"],
            [
                [
                    t["tier"],
                    t["customers"],
                    t["min_value"],
                    t["max_value"],
                    t["value"],
                    f"{t['share_of_value']:.1%}",
                ]
                for t in data["value_tiers"]
            ],
            caption="Value tiers",
        ),
        Chart(
            "bar",
            [f"{b['from']:.1f}-{b['to']:.1f}" for b in data["alive_histogram"]],
            {"customers": [b["customers"] for b in data["alive_histogram"]]},
            caption="Customers by probability of being active",
        ),
        Table(customer_columns, rows(data["top_customers"]), caption="Top customers ahead"),
        Table(
            customer_columns,
            rows(data["churn_risk"]["customers"]),
            caption=f"At risk of churning: {data['churn_risk']['customers_at_risk']:,} "
            f"customers, {data['churn_risk']['revenue_at_risk']} spent so far",
        ),
    ]


def _params_text(values: dict[str, float], names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} = {values[name]:.4g}" for name in names)


def _bucket_label(bucket: dict[str, Any]) -> str:
    if bucket["to"] is None:
        return f"{bucket['from']:.0f}+"
    return f"{bucket['from']:.0f}-{bucket['to']:.0f}"


def _rounded(params: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in params.items()}


def _money(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(CENT, ROUND_HALF_EVEN)


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            f"invalid_{name}", f"{name} must be a whole number from {low} to {high}; got {value!r}"
        )
    return value


def _fraction(value: Any, name: str, zero_ok: bool) -> float:
    """A number in [0, 1) (a rate) or (0, 1) (a probability threshold)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (0 <= number < 1) or (number == 0 and not zero_ok):
        low = "0" if zero_ok else "above 0"
        raise InputError(
            f"invalid_{name}",
            f"{name} must be a number from {low} to below 1, e.g. 0.1; got {str(value)[:40]!r}",
        )
    return number


def _day(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        day = None
    if day is None or len(str(value)) != 10 or not date(1970, 1, 1) <= day <= date(2199, 12, 31):
        raise InputError(
            "invalid_as_of", f"as_of must be a day written YYYY-MM-DD; got {str(value)[:30]!r}"
        )
    return day


registry.register("ltv", build_ltv_report)
