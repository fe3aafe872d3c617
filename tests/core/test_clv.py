"""BG/NBD and Gamma-Gamma against the published CDNOW fits (Fader, Hardie and Lee 2005), the
models' formulas evaluated directly for a few customers, and every refused input."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import gamma as gamma_dist

from c360.analytics import clv
from c360.connectors import cdnow
from c360.errors import InputError

REPO = Path(__file__).resolve().parents[2]

#: Published parameters: BG/NBD in "Counting your customers the easy way" (2005), table 1;
#: Gamma-Gamma in "RFM and CLV" (2005) and the 2013 note on the Gamma-Gamma model.
PAPER_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PAPER_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}
PAPER_LOG_LIKELIHOOD = -9582.4


def _wheel_csv(name: str) -> list[dict[str, str]]:
    """Rows of a CSV in the lifetimes wheel, downloaded once by c360's CDNOW helper."""
    folder = REPO / "fixtures" / "cdnow"
    cdnow.fetch(folder)
    wheels = sorted(folder.glob("[Ll]ifetimes-*.whl"))
    if not wheels:
        pytest.fail(f"the lifetimes wheel is not in {folder}: delete CDNOW_master.txt there")
    with zipfile.ZipFile(wheels[0]) as archive:
        text = archive.read(f"lifetimes/datasets/{name}").decode("ascii")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def summary() -> tuple[list[float], list[float], list[float]]:
    rows = _wheel_csv("cdnow_customers_summary.csv")
    assert len(rows) == 2357
    return (
        [float(row["frequency"]) for row in rows],
        [float(row["recency"]) for row in rows],
        [float(row["T"]) for row in rows],
    )


@pytest.fixture(scope="module")
def model(summary: tuple[list[float], list[float], list[float]]) -> clv.BgNbd:
    return clv.fit_bgnbd(*summary)


def test_bgnbd_on_cdnow_gives_the_published_parameters(model: clv.BgNbd) -> None:
    for name, published in PAPER_BGNBD.items():
        assert getattr(model, name) == pytest.approx(published, rel=0.01), name
    assert model.customers == 2357
    assert model.log_likelihood == pytest.approx(PAPER_LOG_LIKELIHOOD, abs=0.5)


def test_gamma_gamma_on_cdnow_repeat_buyers_gives_the_published_parameters() -> None:
    rows = _wheel_csv("cdnow_customers_summary_with_transactions.csv")
    x = [float(row["x"]) for row in rows]
    zbar = [float(row["zbar"]) for row in rows]

    fitted = clv.fit_gamma_gamma(x, zbar)

    for name, published in PAPER_GAMMA_GAMMA.items():
        assert getattr(fitted, name) == pytest.approx(published, rel=0.01), name
    assert fitted.customers == sum(1 for value in x if value > 0) == 946


def test_the_papers_customer_expects_1_226_purchases_in_the_next_39_weeks(
    model: clv.BgNbd,
) -> None:
    # the paper's worked example: x = 2, t_x = 30.43, T = 38.86 (section 5)
    expected = clv.expected_purchases(model, 39, [2], [30.43], [38.86])
    assert float(expected[0]) == pytest.approx(1.226, abs=0.002)


def test_a_customer_without_repeat_purchases_is_certainly_alive(model: clv.BgNbd) -> None:
    alive = clv.probability_alive(model, [0, 0, 3], [0, 0, 2.0], [10.0, 70.0, 70.0])
    assert list(alive[:2]) == [1.0, 1.0]
    # a customer who bought often early and then stopped for 68 weeks is probably gone
    assert alive[2] < 0.05


def test_probability_alive_follows_the_papers_formula(model: clv.BgNbd) -> None:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    x, t_x, big_t = 4.0, 20.0, 38.0
    direct = 1 / (1 + a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x))
    assert float(clv.probability_alive(model, x, t_x, big_t)[0]) == pytest.approx(direct)


def test_the_likelihood_equals_the_papers_formula_evaluated_directly(
    model: clv.BgNbd,
) -> None:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    customers = [(0, 0.0, 38.86), (1, 1.71, 38.86), (2, 30.43, 38.86), (7, 29.43, 38.86)]
    for x, t_x, big_t in customers:
        a1 = math.gamma(r + x) * alpha**r / math.gamma(r)
        a2 = math.gamma(a + b) * math.gamma(b + x) / (math.gamma(b) * math.gamma(a + b + x))
        a3 = (1 / (alpha + big_t)) ** (r + x)
        a4 = (a / (b + x - 1)) * (1 / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
        direct = a1 * a2 * (a3 + a4)

        computed = clv.bgnbd_log_likelihood(model.params().values(), [x], [t_x], [big_t])
        assert math.exp(float(computed[0])) == pytest.approx(direct, rel=1e-9)


def test_the_spend_likelihood_equals_the_mixture_integrated_numerically() -> None:
    # z̄ of x purchases ~ Gamma(shape p·x, rate ν·x) given ν; ν ~ Gamma(shape q, rate v)
    p, q, v = 6.25, 3.74, 15.44
    for x, zbar in ((1, 11.77), (2, 22.35), (5, 40.0)):

        def joint(nu: float, x: int = x, zbar: float = zbar) -> float:
            spend = gamma_dist.pdf(zbar, p * x, scale=1 / (nu * x))
            return float(spend * gamma_dist.pdf(nu, q, scale=1 / v))

        integrated, _error = quad(joint, 0, np.inf, limit=200)
        computed = clv.gamma_gamma_log_likelihood((p, q, v), [x], [zbar])
        assert math.exp(float(computed[0])) == pytest.approx(integrated, rel=1e-6)


def test_expected_spend_shrinks_a_customers_mean_towards_the_population_mean() -> None:
    model = clv.GammaGamma(p=6.25, q=3.74, v=15.44, log_likelihood=0.0, customers=946)
    population = 6.25 * 15.44 / (3.74 - 1)
    weight = 6.25 * 2 / (6.25 * 2 + 3.74 - 1)

    spend = clv.expected_average_value(model, [0, 2], [0.0, 22.35])

    assert float(spend[0]) == pytest.approx(population)
    assert float(spend[1]) == pytest.approx(weight * 22.35 + (1 - weight) * population)


def test_lifetime_value_undiscounted_is_expected_spend_times_expected_purchases(
    model: clv.BgNbd,
) -> None:
    gg = clv.GammaGamma(p=6.25, q=3.74, v=15.44, log_likelihood=0.0, customers=946)
    args = ([2, 0], [30.43, 0.0], [38.86, 38.86], [22.35, 0.0])
    spend = clv.expected_average_value(gg, args[0], args[3])

    undiscounted = clv.lifetime_value(model, gg, *args, 52, 0.0)
    one_period = clv.lifetime_value(model, gg, *args, 1, 0.01)

    purchases_52 = clv.expected_purchases(model, 52, *args[:3])
    purchases_1 = clv.expected_purchases(model, 1, *args[:3])
    assert list(undiscounted) == pytest.approx(list(spend * purchases_52))
    assert list(one_period) == pytest.approx(list(spend * purchases_1 / 1.01))
    discounted = clv.lifetime_value(model, gg, *args, 52, 0.01)
    assert all(0 < d < u for d, u in zip(discounted, undiscounted, strict=True))


def test_a_fit_on_simulated_customers_recovers_the_parameters_it_was_drawn_from() -> None:
    truth = {"r": 0.5, "alpha": 6.0, "a": 0.8, "b": 2.5}
    x, t_x, big_t = _simulate_bgnbd(truth, customers=6000, weeks=52.0, seed=7)

    fitted = clv.fit_bgnbd(x, t_x, big_t)

    # 6,000 customers pin r and alpha to about 10%; a and b, seen only through drop-outs,
    # less tightly (their standard errors are about 20% at this size)
    assert fitted.r == pytest.approx(truth["r"], rel=0.15)
    assert fitted.alpha == pytest.approx(truth["alpha"], rel=0.15)
    assert fitted.a == pytest.approx(truth["a"], rel=0.35)
    assert fitted.b == pytest.approx(truth["b"], rel=0.35)


def _simulate_bgnbd(
    params: dict[str, float], customers: int, weeks: float, seed: int
) -> tuple[list[float], list[float], list[float]]:
    """Customers drawn from the BG/NBD story: Poisson purchases at rate λ ~ Gamma(r, α);
    after each purchase, drop out with probability p ~ Beta(a, b)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(params["r"], 1 / params["alpha"], customers)
    drops = rng.beta(params["a"], params["b"], customers)
    x, t_x, big_t = [], [], []
    for rate, drop in zip(rates, drops, strict=True):
        now, last, count = 0.0, 0.0, 0
        while True:
            now += rng.exponential(1 / rate)
            if now > weeks:
                break
            count, last = count + 1, now
            if rng.random() < drop:
                break
        x.append(float(count))
        t_x.append(last)
        big_t.append(weeks)
    return x, t_x, big_t


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "code"),
    [
        ([], [], [], "no_customers"),
        ([1, -1], [1, 1], [2, 2], "negative_value"),
        ([1, 2], [1, 3], [2, 2], "recency_after_T"),
        ([1, float("nan")], [1, 1], [2, 2], "non_finite_value"),
        ([1, 2], [1, float("inf")], [2, 2], "non_finite_value"),
        ([1.5, 2], [1, 1], [2, 2], "invalid_frequency"),
        ([1, 2], [1], [2, 2], "mismatched_lengths"),
        ([0, 0], [0, 0], [2, 2], "no_repeat_purchases"),
    ],
)
def test_bad_purchase_data_is_refused_with_a_reason(
    frequency: list[float], recency: list[float], T: list[float], code: str
) -> None:
    with pytest.raises(InputError) as refused:
        clv.fit_bgnbd(frequency, recency, T)
    assert refused.value.code == code
    assert refused.value.message


@pytest.mark.parametrize(
    ("frequency", "monetary", "code"),
    [
        ([], [], "no_customers"),
        ([0, 0, 0], [0.0, 0.0, 0.0], "too_few_repeat_buyers"),
        ([2, 0], [10.0, 0.0], "too_few_repeat_buyers"),
        ([2, 3], [10.0, -1.0], "negative_value"),
        ([2, 3], [10.0, 0.0], "invalid_monetary_mean"),
        ([2, 3], [10.0, float("nan")], "non_finite_value"),
        ([2, 3], [10.0], "mismatched_lengths"),
    ],
)
def test_bad_spend_data_is_refused_with_a_reason(
    frequency: list[float], monetary: list[float], code: str
) -> None:
    with pytest.raises(InputError) as refused:
        clv.fit_gamma_gamma(frequency, monetary)
    assert refused.value.code == code


def test_a_bad_horizon_or_discount_is_refused(model: clv.BgNbd) -> None:
    gg = clv.GammaGamma(p=6.25, q=3.74, v=15.44, log_likelihood=0.0, customers=946)
    args = ([2], [30.43], [38.86], [22.35])
    with pytest.raises(InputError) as horizon:
        clv.lifetime_value(model, gg, *args, 0, 0.01)
    with pytest.raises(InputError) as discount:
        clv.lifetime_value(model, gg, *args, 52, -0.1)
    with pytest.raises(InputError) as unbounded:
        clv.expected_average_value(clv.GammaGamma(1.0, 0.9, 1.0, 0.0, 2), [2], [3.0])
    with pytest.raises(InputError) as negative_t:
        clv.expected_purchases(model, -1.0, [2], [30.43], [38.86])
    assert horizon.value.code == "invalid_horizon"
    assert discount.value.code == "invalid_discount"
    assert unbounded.value.code == "spend_model_unbounded"
    assert negative_t.value.code == "negative_value"


def test_expected_purchases_equal_the_papers_form_and_stay_finite_for_heavy_buyers(
    model: clv.BgNbd,
) -> None:
    from scipy.special import hyp2f1

    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    for x, t_x, big_t, t in ((1, 5.0, 30.0, 10.0), (6, 25.0, 38.0, 39.0), (20, 37.0, 38.0, 52)):
        # equation 10 exactly as printed, fine for moderate x
        bracket = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(
            r + x, b + x, a + b + x - 1, t / (alpha + big_t + t)
        )
        odds = a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
        direct = (a + b + x - 1) / (a - 1) * bracket / (1 + odds)
        ours = clv.expected_purchases(model, t, [x], [t_x], [big_t])
        assert float(ours[0]) == pytest.approx(direct, rel=1e-9)

    heavy = clv.expected_purchases(model, 52, [1500], [78.0], [78.0])  # bought last week
    assert np.isfinite(heavy).all() and 100 < float(heavy[0]) < 2000


def test_a_fit_that_runs_off_to_a_limit_is_refused_rather_than_shown():
    # 40 steady buyers who never seem to stop: the likelihood keeps improving as r and alpha
    # grow without bound and a, b shrink to nothing; no usable prediction comes from that
    frequency = [float(n % 4) for n in range(40)]
    recency = [3.0 * f for f in frequency]
    T = [12.0 + 3.0 * f for f in frequency]

    with pytest.raises(clv.ModelInputError) as refused:
        clv.fit_bgnbd(frequency, recency, T)

    assert refused.value.code == "model_not_identified"
    assert "wait for more purchases" in refused.value.message
