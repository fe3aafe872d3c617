"""Customer lifetime value models on scipy: BG/NBD for how many purchases a customer will make
and whether they are still "alive", Gamma-Gamma for how much each purchase is worth.

BG/NBD: Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to
the Pareto/NBD model", Marketing Science 24(2). Gamma-Gamma: Fader, Hardie and Lee (2005),
"RFM and CLV: using iso-value curves for customer base analysis", Journal of Marketing Research
42(4), with Fader and Hardie's note "The Gamma-Gamma model of monetary value" (2013).

Inputs per customer, all in one time unit (weeks in c360): `frequency` x = repeat purchases
(purchase occasions after the first), `recency` t_x = time from the first to the last purchase,
`T` = time from the first purchase to the end of observation; `monetary_mean` = mean value of
the repeat purchases. Pure numerical code: nothing here touches a database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from c360.errors import InputError

Floats = NDArray[np.float64]

#: Every parameter is fitted as its logarithm, so it stays positive without bounds; the
#: optimiser starts from 1 for each, which suits data in weeks or days alike.
_START = 0.0

#: The fit stops when the log-likelihood gains less than this per step: tight enough that the
#: published CDNOW parameters come out to four digits.
_TOLERANCE = 1e-10


class ModelInputError(InputError):
    """Data a lifetime-value model cannot be fitted on or applied to."""


@dataclass(frozen=True)
class BgNbd:
    """A fitted BG/NBD model: purchase rates ~ Gamma(r, alpha), drop-out ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def params(self) -> dict[str, float]:
        """The four parameters by name."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: int

    def params(self) -> dict[str, float]:
        """The three parameters by name (`v` is the paper's gamma)."""
        return {"p": self.p, "q": self.q, "v": self.v}


def bgnbd_log_likelihood(
    params: Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Floats:
    """Each customer's log-likelihood under BG/NBD (the paper's equation 6), in logs:

    L = A1 · A2 · (A3 + [x > 0] · A4), with
    A1 = Γ(r + x) α^r / Γ(r),  A2 = Γ(a + b) Γ(b + x) / (Γ(b) Γ(a + b + x)),
    A3 = (α + T)^-(r + x),     A4 = a / (b + x − 1) · (α + t_x)^-(r + x).
    A3 and A4 are added with logaddexp, so customers with many purchases do not underflow."""
    r, alpha, a, b = params
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    log_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    log_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    log_a3 = -(r + x) * np.log(alpha + big_t)
    repeat = x > 0
    log_a4 = np.full_like(x, -np.inf)
    log_a4[repeat] = (
        np.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    )
    return np.asarray(log_a1 + log_a2 + np.logaddexp(log_a3, log_a4), dtype=float)


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BgNbd:
    """The maximum-likelihood BG/NBD parameters for these customers."""
    x, t_x, big_t = _rfm(frequency, recency, T)
    if not (x > 0).any():
        raise ModelInputError(
            "no_repeat_purchases",
            "no customer has bought twice, so drop-out cannot be estimated; wait for repeat "
            "purchases or widen the period",
        )

    def loss(log_params: Floats) -> float:
        with np.errstate(all="ignore"):  # a trial step far out may overflow: it is refused
            value = -bgnbd_log_likelihood(np.exp(log_params), x, t_x, big_t).sum()
        return float(value) if math.isfinite(value) else math.inf

    best = _minimise(loss, 4)
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    _require_identified("BG/NBD purchase", {"r": r, "alpha": alpha, "a": a, "b": b})
    return BgNbd(r, alpha, a, b, -float(best.fun), len(x))


#: BG/NBD parameters beyond these bounds mean the likelihood kept improving towards a limit
#: (a Poisson buyer who never drops out): the data cannot tell the parameters apart, and the
#: predictions from them come out as NaN.
IDENTIFIED_RANGE = (1e-4, 1e4)


def _require_finite_params(model: str, params: dict[str, float]) -> None:
    if all(math.isfinite(v) and v > 0 for v in params.values()):
        return
    shown = ", ".join(f"{name} = {value:.3g}" for name, value in params.items())
    raise ModelInputError(
        "model_not_identified",
        f"the {model} model cannot be fitted on this data ({shown}); wait for more purchases "
        "or widen the period",
    )


def _require_identified(model: str, params: dict[str, float]) -> None:
    low, high = IDENTIFIED_RANGE
    if all(math.isfinite(v) and low <= v <= high for v in params.values()):
        return
    shown = ", ".join(f"{name} = {value:.3g}" for name, value in params.items())
    raise ModelInputError(
        "model_not_identified",
        f"the {model} model cannot be fitted on this data: its parameters run off to a limit "
        f"({shown}), as they do with few customers or too little history; wait for more "
        "purchases or widen the period",
    )


def probability_alive(
    model: BgNbd, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Floats:
    """P(still active | x, t_x, T) (the paper's equation 11); 1 for a customer with no repeat
    purchase, because BG/NBD lets customers drop out only right after a purchase:

    P = 1 / (1 + [x > 0] · a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x))."""
    x, t_x, big_t = _rfm(frequency, recency, T, allow_empty=True)
    ratio = _odds_dead(model, x, t_x, big_t)
    return np.asarray(1.0 / (1.0 + ratio), dtype=float)


def expected_purchases(
    model: BgNbd, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Floats:
    """E[purchases in the next t | x, t_x, T] (the paper's equation 10):

    (a + b + x − 1) / (a − 1) · [1 − ((α + T) / (α + T + t))^(r + x)
        · ₂F₁(r + x, b + x; a + b + x − 1; t / (α + T + t))] / (1 + [x > 0] · odds_dead).

    Evaluated after Euler's transformation ₂F₁(A, B; C; z) = (1 − z)^(C − A − B)
    ₂F₁(C − A, C − B; C; z), with 1 − z = (α + T) / (α + T + t): the bracket becomes
    1 − ((α + T) / (α + T + t))^(a − 1)
        · ₂F₁(a + b − 1 − r, a − 1; a + b + x − 1; z),
    whose series stays near 1 however many purchases x a customer made, where the original
    form multiplies an overflowing series by an underflowing power."""
    _require_finite_non_negative("t", np.asarray([t], dtype=float))
    x, t_x, big_t = _rfm(frequency, recency, T, allow_empty=True)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    head = (a + b + x - 1) / (a - 1)
    power = np.exp((a - 1) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
    series = hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, t / (alpha + big_t + t))
    return np.asarray(head * (1 - power * series) / (1 + _odds_dead(model, x, t_x, big_t)))


def expected_purchases_new(model: BgNbd, t: float) -> float:
    """E[purchases by a new customer in their first t] (the paper's equation 9)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    series = hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * series))


def gamma_gamma_log_likelihood(
    params: Sequence[float], frequency: ArrayLike, monetary_mean: ArrayLike
) -> Floats:
    """Each customer's log-likelihood of their mean spend z̄ over x purchases:

    f(z̄ | p, q, v, x) = Γ(px + q) / (Γ(px) Γ(q))
        · v^q x^(px) z̄^(px − 1) / (v + x z̄)^(px + q)."""
    p, q, v = params
    x, z = np.asarray(frequency, dtype=float), np.asarray(monetary_mean, dtype=float)
    return np.asarray(
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + p * x * np.log(x)
        + (p * x - 1) * np.log(z)
        - (p * x + q) * np.log(v + x * z),
        dtype=float,
    )


def fit_gamma_gamma(frequency: ArrayLike, monetary_mean: ArrayLike) -> GammaGamma:
    """The maximum-likelihood Gamma-Gamma parameters. Only customers with repeat purchases
    carry spend information (the model is fitted on them alone, as in the paper); every such
    customer's mean must be above zero."""
    x, z = _spend(frequency, monetary_mean)
    if len(x) < 2:
        raise ModelInputError(
            "too_few_repeat_buyers",
            f"the spend model needs at least two customers with repeat purchases; {len(x)} "
            "have one: wait for more purchases or widen the period",
        )

    def loss(log_params: Floats) -> float:
        with np.errstate(all="ignore"):  # a trial step far out may overflow: it is refused
            value = -gamma_gamma_log_likelihood(np.exp(log_params), x, z).sum()
        return float(value) if math.isfinite(value) else math.inf

    best = _minimise(loss, 3)
    p, q, v = (float(value) for value in np.exp(best.x))
    # unlike BG/NBD's, Gamma-Gamma's limits are usable: p growing without bound means "each
    # customer's own mean", q and v together "everyone alike"; only a non-number is refused
    _require_finite_params("Gamma-Gamma spend", {"p": p, "q": q, "v": v})
    return GammaGamma(p, q, v, -float(best.fun), len(x))


def expected_average_value(
    model: GammaGamma, frequency: ArrayLike, monetary_mean: ArrayLike
) -> Floats:
    """E[spend per purchase | x, z̄]: a weighted mean of the population mean p·v / (q − 1) and
    the customer's own z̄, with weight p·x / (p·x + q − 1) on z̄:

    (v + x z̄) · p / (p x + q − 1).

    A customer with no repeat purchase gets the population mean."""
    x = np.asarray(frequency, dtype=float)
    z = np.asarray(monetary_mean, dtype=float)
    _require_finite_non_negative("frequency", x)
    _require_finite_non_negative("monetary_mean", z)
    p, q, v = model.p, model.q, model.v
    if q <= 1:
        raise ModelInputError(
            "spend_model_unbounded",
            f"the fitted spend model has q = {q:.3g} <= 1, so its mean spend is unbounded; "
            "fit it on more repeat buyers",
        )
    z = np.where(x > 0, z, 0.0)  # without repeat purchases z̄ carries no information
    return np.asarray((v + x * z) * p / (p * x + q - 1), dtype=float)


def lifetime_value(
    bgnbd: BgNbd,
    gg: GammaGamma,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_mean: ArrayLike,
    horizon_periods: int,
    discount_rate_per_period: float,
) -> Floats:
    """Each customer's discounted expected spend over the next `horizon_periods` periods
    (periods in the models' time unit):

    CLV = Σ_{k=1..H} m · (E[Y(k)] − E[Y(k − 1)]) / (1 + d)^k,

    where E[Y(k)] is BG/NBD's expected purchases in the next k periods, m the Gamma-Gamma
    expected spend per purchase, and d the discount rate per period: the purchases expected
    in period k are valued at m and discounted to today (the same sum as in the `lifetimes`
    library's customer_lifetime_value, with periods of one time unit)."""
    if horizon_periods < 1:
        raise ModelInputError(
            "invalid_horizon", f"the horizon must be at least one period; got {horizon_periods}"
        )
    if not math.isfinite(discount_rate_per_period) or discount_rate_per_period < 0:
        raise ModelInputError(
            "invalid_discount",
            f"the discount rate must be a number >= 0; got {discount_rate_per_period!r}",
        )
    spend = expected_average_value(gg, frequency, monetary_mean)
    value = np.zeros_like(spend)
    previous = np.zeros_like(spend)
    for k in range(1, horizon_periods + 1):
        purchases = expected_purchases(bgnbd, k, frequency, recency, T)
        value += spend * (purchases - previous) / (1 + discount_rate_per_period) ** k
        previous = purchases
    return value


def _odds_dead(model: BgNbd, x: Floats, t_x: Floats, big_t: Floats) -> Floats:
    """a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x) for x > 0, else 0, in logs."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    odds = np.zeros_like(x)
    repeat = x > 0
    xr = x[repeat]
    log_odds = (
        np.log(a)
        - np.log(b + xr - 1)
        + (r + xr) * (np.log(alpha + big_t[repeat]) - np.log(alpha + t_x[repeat]))
    )
    odds[repeat] = np.exp(np.minimum(log_odds, 700.0))  # past e^700 the customer is gone
    return odds


def _minimise(loss: Any, size: int) -> Any:
    """Minimise `loss` over log-parameters: Nelder-Mead first (robust from a poor start),
    then L-BFGS-B from there to polish."""
    start = np.full(size, _START)
    rough = minimize(
        loss,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": _TOLERANCE, "maxiter": 20_000, "maxfev": 40_000},
    )
    fine = minimize(loss, rough.x, method="L-BFGS-B", options={"ftol": _TOLERANCE})
    best = fine if fine.fun <= rough.fun else rough
    if not math.isfinite(best.fun):
        raise ModelInputError(
            "model_did_not_fit",
            "the model could not be fitted to this data (the likelihood is not finite); "
            "check the data for extreme values",
        )
    return best


def _rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, allow_empty: bool = False
) -> tuple[Floats, Floats, Floats]:
    """The three arrays, checked: same length, finite, non-negative, whole frequencies and
    recency <= T."""
    x = np.atleast_1d(np.asarray(frequency, dtype=float))
    t_x = np.atleast_1d(np.asarray(recency, dtype=float))
    big_t = np.atleast_1d(np.asarray(T, dtype=float))
    if not len(x) == len(t_x) == len(big_t):
        raise ModelInputError(
            "mismatched_lengths",
            f"frequency, recency and T need one value per customer; got {len(x)}, "
            f"{len(t_x)} and {len(big_t)}",
        )
    if not len(x) and not allow_empty:
        raise ModelInputError("no_customers", "there are no customers to fit the model on")
    for name, values in (("frequency", x), ("recency", t_x), ("T", big_t)):
        _require_finite_non_negative(name, values)
    if (x != np.floor(x)).any():
        raise ModelInputError(
            "invalid_frequency", "frequency counts repeat purchases: give whole numbers"
        )
    late = np.flatnonzero(t_x > big_t)
    if len(late):
        raise ModelInputError(
            "recency_after_T",
            f"{len(late)} customers have recency greater than T (the first at row "
            f"{late[0]}: {t_x[late[0]]} > {big_t[late[0]]}); recency ends at the last purchase, "
            "which cannot be after the end of observation",
        )
    return x, t_x, big_t


def _spend(frequency: ArrayLike, monetary_mean: ArrayLike) -> tuple[Floats, Floats]:
    """The repeat buyers' (x, z̄), checked; customers without repeat purchases left out."""
    x = np.atleast_1d(np.asarray(frequency, dtype=float))
    z = np.atleast_1d(np.asarray(monetary_mean, dtype=float))
    if len(x) != len(z):
        raise ModelInputError(
            "mismatched_lengths",
            f"frequency and monetary_mean need one value per customer; got {len(x)} and {len(z)}",
        )
    if not len(x):
        raise ModelInputError("no_customers", "there are no customers to fit the model on")
    _require_finite_non_negative("frequency", x)
    _require_finite_non_negative("monetary_mean", z)
    repeat = x > 0
    if (z[repeat] <= 0).any():
        raise ModelInputError(
            "invalid_monetary_mean",
            "a customer with repeat purchases has a mean spend of 0; the spend model needs "
            "positive amounts: leave out free orders or those customers",
        )
    return x[repeat], z[repeat]


def _require_finite_non_negative(name: str, values: Floats) -> None:
    if not np.isfinite(values).all():
        raise ModelInputError(
            "non_finite_value", f"{name} holds a value that is not a finite number (NaN or inf)"
        )
    if (values < 0).any():
        raise ModelInputError(
            "negative_value", f"{name} holds a negative value; every value must be >= 0"
        )
