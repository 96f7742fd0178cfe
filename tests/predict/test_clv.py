"""Lifetime value: the BG/NBD and Gamma-Gamma math, the point-in-time order history on both engines,
and the reproduction of the published CDNOW fits through `opencdp import`."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from scipy.optimize import approx_fprime
from scipy.special import hyp2f1

from opencdp.config import Settings
from opencdp.imports.cli import import_command
from opencdp.predict import clv
from opencdp.predict.clv import BgNbd, GammaGamma
from opencdp.predict.jobs import job
from opencdp.predict.model import Fitted, TooThin
from opencdp.predict.orders import purchases_between, read_purchase_days, summarize
from opencdp.process.processor import Processor
from opencdp.store.database import open_database
from opencdp.store.schema import profile_events, profiles
from tests.conftest import POSTGRES_ADMIN_URL, _postgres_reason
from tests.identity_helpers import profile_of
from tests.predict import cdnow

#: Fader, Hardie & Lee (2005), table 1 / lifetimes' docs: BG/NBD on the CDNOW sample's first 39 weeks.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
#: Fader & Hardie, "The Gamma-Gamma model of monetary value" (2013): the 946 repeat buyers.
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}
PAPER = BgNbd(**PUBLISHED_BGNBD)


def close(value: float, expected: float, rel: float = 0.01) -> bool:
    return abs(value - expected) <= rel * abs(expected)


# --- The math -----------------------------------------------------------------------------------


def test_hand_checked_predictions_for_the_papers_customer() -> None:
    """Customer 1 of the CDNOW sample: 2 repeat purchases, the last at week 30.43, T = 38.86. The
    expected 39-week value is the one lifetimes' docs show (1.226); P(alive) from eq. (13)."""
    x, t_x, T = np.array([2.0]), np.array([30.43]), np.array([38.86])
    assert close(float(clv.expected_purchases(PAPER, 39, x, t_x, T)[0]), 1.226, 0.001)
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    by_hand = 1 / (1 + a / (b + 1) * ((alpha + 38.86) / (alpha + 30.43)) ** (r + 2))
    assert close(float(clv.p_alive(PAPER, x, t_x, T)[0]), by_hand, 1e-9)
    assert close(by_hand, 0.7266, 0.001)


def test_frequency_zero_is_alive_and_expects_the_new_customer_rate_shrunk_by_time() -> None:
    T = np.array([0.0, 10.0, 38.86])
    zeros = np.zeros(3)
    assert np.all(clv.p_alive(PAPER, zeros, zeros, T) == 1.0)
    # At T = 0 a customer is a new one: E[Y(t) | 0, 0, 0] = E[X(t)]
    new = clv.expected_purchases_new(PAPER, 39.0)
    assert close(float(clv.expected_purchases(PAPER, 39, zeros[:1], zeros[:1], T[:1])[0]), float(new), 1e-9)
    # ... and the longer they stay silent, the fewer purchases are expected
    silent = clv.expected_purchases(PAPER, 39, zeros, zeros, T)
    assert silent[0] > silent[1] > silent[2] > 0


def test_the_euler_form_equals_the_papers_formula() -> None:
    """expected_purchases rewrites eq. (10)'s 2F1 by Euler's transformation; same numbers."""
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    x = np.array([1.0, 2, 5, 10, 3, 7])
    t_x = np.array([5.0, 30.43, 20, 38, 1, 12])
    T = np.array([38.86, 38.86, 30, 39, 39, 20])
    for t in (1.0, 39.0, 200.0):
        z = t / (alpha + T + t)
        direct = (
            (a + b + x - 1)
            / (a - 1)
            * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z))
            / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
        )
        np.testing.assert_allclose(clv.expected_purchases(PAPER, t, x, t_x, T), direct, rtol=1e-9)


def test_frequent_buyers_stay_finite() -> None:
    x = np.array([300.0, 1000.0, 5000.0])
    got = clv.expected_purchases(PAPER, 39, x, np.array([38.0, 38.8, 38.86]), np.array([38.86] * 3))
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    assert np.all(np.isfinite(clv.p_alive(PAPER, x, x * 0, x * 0 + 38.86)))


def simulate_bgnbd(
    n: int, T: float, r: float, alpha: float, a: float, b: float, seed: int
) -> tuple[Any, ...]:
    """Customers drawn from the BG/NBD story (first purchase at 0, then Poisson purchases, each
    followed by dropping out with probability p)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rate[i])
            if t > T:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < drop[i]:
                break
    return x, t_x, np.full(n, T)


def test_simulated_bgnbd_data_recovers_its_parameters() -> None:
    truth = {"r": 0.5, "alpha": 4.0, "a": 0.8, "b": 2.5}
    x, t_x, T = simulate_bgnbd(8000, 52.0, seed=7, **truth)
    fitted = clv.fit_bgnbd(x, t_x, T)
    assert close(fitted.r, truth["r"], 0.15) and close(fitted.alpha, truth["alpha"], 0.2)
    # a and b are less well identified one by one; the mean dropout probability a/(a+b) is
    assert close(fitted.a / (fitted.a + fitted.b), 0.8 / 3.3, 0.15)
    assert fitted.log_likelihood == pytest.approx(
        float(clv.bgnbd_log_likelihood(fitted.r, fitted.alpha, fitted.a, fitted.b, x, t_x, T).sum())
    )
    assert clv.fit_bgnbd(x, t_x, T) == fitted  # deterministic
    # a large history: the starting points are compared on a sample, the best is run on all
    many = simulate_bgnbd(30_000, 52.0, seed=8, **truth)
    large = clv.fit_bgnbd(*many)
    assert close(large.r, truth["r"], 0.1) and close(large.alpha, truth["alpha"], 0.1)
    assert close(large.a / (large.a + large.b), 0.8 / 3.3, 0.1)
    # a fit in days is the fit in weeks, with alpha in days
    weeks = clv.fit_bgnbd(x, t_x / 7, T / 7)
    assert close(weeks.r, fitted.r, 1e-4) and close(weeks.alpha * 7, fitted.alpha, 1e-4)


def test_customers_all_alike_give_finite_predictions() -> None:
    """One Poisson rate for everyone and nobody dropping out: r and alpha run off together (no
    heterogeneity to fit; the likelihood is flat out there), at most MAX_R, and the predictions stay
    finite and right."""
    rng = np.random.default_rng(5)
    n, T, rate = 5000, 100.0, 0.2
    arrivals = [np.sort(rng.uniform(0, T, k)) for k in rng.poisson(rate * T, n)]
    x = np.array([len(a) for a in arrivals], dtype=float)
    t_x = np.array([a[-1] if len(a) else 0.0 for a in arrivals])
    fitted = clv.fit_bgnbd(x, t_x, np.full(n, T))
    assert 100 < fitted.r <= clv.MAX_R and close(fitted.r / fitted.alpha, rate, 0.02)
    expected = clv.expected_purchases(fitted, 50.0, x, t_x, np.full(n, T))
    assert np.all(np.isfinite(expected)) and close(float(expected.mean()), rate * 50, 0.05)


def test_the_analytic_gradients_match_the_likelihoods() -> None:
    x, t_x, T = simulate_bgnbd(300, 52.0, 0.5, 4.0, 0.8, 2.5, seed=1)
    weight = np.arange(1.0, 301.0)
    bgnbd_terms = clv._bgnbd_terms(x, t_x, T, weight)
    for point in ([0.3, 1.2, -0.4, 0.9], [-1.0, 2.0, 0.5, -0.2]):
        log_params = np.array(point)
        value, analytic = clv._bgnbd_loss(log_params, bgnbd_terms)
        r, alpha, a, b = np.exp(log_params)
        assert value == pytest.approx(
            -weight @ clv.bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T) / weight.sum()
        )
        numeric = approx_fprime(log_params, lambda p: clv._bgnbd_loss(p, bgnbd_terms)[0], 1e-7)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)
    m = np.linspace(5.0, 80.0, 300)
    repeat = x + 1
    spend_terms = clv._gamma_gamma_terms(repeat, m, weight)
    for point in ([1.8, 1.3, 2.7], [0.1, 0.5, 1.0]):
        log_params = np.array(point)
        value, analytic = clv._gamma_gamma_loss(log_params, spend_terms)
        p, q, v = np.exp(log_params)
        assert value == pytest.approx(
            -weight @ clv.gamma_gamma_log_likelihood(p, q, v, repeat, m) / weight.sum()
        )
        numeric = approx_fprime(log_params, lambda p: clv._gamma_gamma_loss(p, spend_terms)[0], 1e-7)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_simulated_gamma_gamma_data_recovers_its_parameters() -> None:
    rng = np.random.default_rng(3)
    p, q, v = 6.0, 4.0, 15.0
    n = 6000
    x = rng.integers(1, 8, n).astype(float)
    nu = rng.gamma(q, 1 / v, n)
    m = np.array([rng.gamma(p, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    fitted = clv.fit_gamma_gamma(x, m)
    assert close(fitted.p, p, 0.1) and close(fitted.q, q, 0.15) and close(fitted.v, v, 0.2)
    # frequency 0 (or no revenue) is left out of the fit, and the population mean is its prediction
    assert clv.fit_gamma_gamma(np.r_[x, 0, 0], np.r_[m, 0, 5]) == fitted
    gg = GammaGamma(6.25, 3.74, 15.44)
    assert close(
        float(clv.expected_order_value(gg, np.array([0.0]), np.array([0.0]))[0]), 6.25 * 15.44 / 2.74
    )
    # many purchases: close to the customer's own mean
    assert close(float(clv.expected_order_value(gg, np.array([500.0]), np.array([40.0]))[0]), 40.0, 0.01)


def test_scoring_a_million_customers_takes_seconds() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    T = rng.integers(0, 730, n).astype(float)
    t_x = np.floor(T * rng.random(n))
    x = np.where(t_x > 0, rng.integers(1, 30, n), 0).astype(float)
    started = time.monotonic()
    alive = clv.p_alive(PAPER, x, t_x, T)
    purchases = clv.expected_purchases(PAPER, 120.0, x, t_x, T)
    took = time.monotonic() - started
    assert np.all(np.isfinite(purchases)) and np.all((alive > 0) & (alive <= 1))
    assert took < 10, f"{took:.1f} s"


def test_options_are_checked() -> None:
    assert clv.parse_options({"unit": None}).unit == "days"
    assert clv.parse_options({"revenue_property": "amount"}).revenue_property == ("amount",)
    assert clv.parse_options({"horizon_days": 30}).holdout == 30
    for bad, words in [
        ({"unit": "months"}, "unit"),
        ({"horizont_days": 3}, "horizont_days"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ]:
        with pytest.raises(ValueError, match=words):
            clv.parse_options(bad)


# --- The order history, point in time, on both engines ------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def add_profile(conn: sa.Connection, profile_id: str, merged_into: str | None = None) -> None:
    conn.execute(
        profiles.insert().values(
            id=profile_id,
            merged_into=merged_into,
            anchor={},
            last_edge_key={},
            identity_counts={},
            traits={},
            trait_meta={},
            event_counts={},
            updated_at=NOW,
        )
    )


def add_event(
    conn: sa.Connection,
    event_id: int,
    profile_id: str,
    ts: datetime,
    name: str = "Order Completed",
    **props: Any,
) -> None:
    conn.execute(
        profile_events.insert().values(
            event_id=event_id,
            profile_id=profile_id,
            type="track",
            name=name,
            ts=ts,
            source_id=1,
            properties=props,
        )
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = open_database(settings)
    yield engine
    engine.dispose()


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def test_the_order_history_counts_days_up_to_the_cutoff(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for profile_id in ("ann", "bob", "cy", "gone"):
            add_profile(conn, profile_id)
        add_profile(conn, "old", merged_into="ann")
        add_event(conn, 1, "ann", at(1), revenue=10)
        add_event(conn, 2, "ann", at(1, 18), total=5)  # same day: one purchase, 15
        add_event(conn, 3, "ann", at(4), value=7.5)
        add_event(conn, 4, "ann", at(8, 23, 59), revenue=20, total=99)  # revenue before total
        add_event(conn, 5, "ann", at(9, 0, 0), revenue=1000)  # after the cutoff day
        add_event(conn, 6, "ann", at(5), name="Product Viewed", revenue=3)  # not an order
        add_event(conn, 7, "ann", at(6), revenue="12")  # a string is not a number: counts 0
        add_event(conn, 8, "bob", at(2), revenue=30)
        add_event(conn, 9, "old", at(3), revenue=40)  # merged away: its rows are not live
        add_event(conn, 10, "cy", at(10), revenue=5)  # first order after the cutoff
        conn.execute(
            profile_events.insert().values(
                event_id=11,
                profile_id="gone",
                type="page",
                name="Order Completed",
                ts=at(2),
                source_id=1,
                properties={"revenue": 1},
            )
        )
    days = read_purchase_days(engine, datetime(2025, 3, 8, tzinfo=UTC))
    assert days.until == date(2025, 3, 8)
    summary = summarize(days)
    got = {
        pid: (f, r, t, m)
        for pid, f, r, t, m in zip(
            summary.profile_ids, summary.frequency, summary.recency, summary.T, summary.monetary, strict=True
        )
    }
    assert got == {"ann": (3.0, 7.0, 7.0, (7.5 + 0 + 20) / 3), "bob": (0.0, 0.0, 6.0, 0.0)}
    weekly = summarize(days, unit="weeks")
    assert list(weekly.T) == [1.0, 6 / 7] and list(weekly.recency) == [1.0, 0.0]
    earlier = summarize(days, date(2025, 3, 4))
    assert dict(zip(earlier.profile_ids, earlier.frequency, strict=True)) == {"ann": 1.0, "bob": 0.0}
    count, revenue = purchases_between(days, date(2025, 3, 4), date(2025, 3, 8))
    assert dict(zip(days.profile_ids, count, strict=True)) == {"ann": 2.0, "bob": 0.0}
    assert dict(zip(days.profile_ids, revenue, strict=True)) == {"ann": 20.0, "bob": 0.0}
    only_total = summarize(read_purchase_days(engine, at(8), revenue_properties=["total"]))
    assert only_total.monetary[0] == pytest.approx(99 / 3)


def test_calendar_days_in_a_time_zone(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        add_profile(conn, "ann")
        add_event(conn, 1, "ann", at(1, 23, 15), revenue=1)  # 2 March in Berlin (UTC+1)
        add_event(conn, 2, "ann", at(1, 23, 45), revenue=2)  # 2 March in Berlin too
        add_event(conn, 3, "ann", at(2, 5), revenue=4)  # 2 March everywhere
        add_event(conn, 4, "ann", at(30, 22, 30), revenue=8)  # 31 March in Berlin (UTC+2 by then)
    utc = summarize(read_purchase_days(engine, date(2025, 3, 31)))
    assert (utc.frequency[0], utc.recency[0], utc.monetary[0]) == (2.0, 29.0, 6.0)
    berlin = summarize(read_purchase_days(engine, date(2025, 3, 31), timezone="Europe/Berlin"))
    assert (berlin.frequency[0], berlin.recency[0], berlin.T[0], berlin.monetary[0]) == (1.0, 29.0, 29.0, 8.0)
    # the cutoff day is Berlin's: 30 March 22:30 UTC is already 31 March there
    assert (
        summarize(read_purchase_days(engine, date(2025, 3, 30), timezone="Europe/Berlin")).frequency[0] == 0
    )


def test_too_few_customers_is_too_thin(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for i in range(30):
            add_profile(conn, f"p{i}")
            add_event(conn, i, f"p{i}", at(1 + i % 20), revenue=10)
    with pytest.raises(TooThin, match="only 30 customers"):
        job("clv").fit(engine, at(28), {})
    with pytest.raises(TooThin, match="only 0 customers"):
        job("clv").fit(engine, at(28), {"event": "Order Placed"})


# --- CDNOW through `opencdp import`, on both engines --------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cdnow_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    """The CDNOW sample imported (CLI) and processed once per engine, in a database of its own."""
    directory = tmp_path_factory.mktemp(f"cdnow-{request.param}")
    data = directory / "cdnow.csv"
    assert cdnow.write_csv(data) == 6919
    mapping = directory / "cdnow.toml"
    mapping.write_text(cdnow.MAPPING_TOML, encoding="utf-8")
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'opencdp.db'}"
    else:
        reason = _postgres_reason()
        if reason:
            pytest.skip(reason)
        name = f"opencdp_cdnow_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    env = {
        "OPENCDP_DATABASE_URL": url,
        "OPENCDP_DATA_DIR": str(directory),
        "OPENCDP_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "prometheus"),
    }
    started = time.monotonic()
    args = [str(data), "--source", "cdnow", "--mapping", str(mapping), "--no-progress"]
    result = CliRunner().invoke(import_command, args, env=env)
    assert result.exit_code == 0, result.output
    numbers = {
        label.strip(): int(number.replace(",", ""))
        for label, number in re.findall(r"^ ([a-z ]+?) +([0-9,]+) *$", result.stdout, re.MULTILINE)
    }
    assert numbers["events written"] == 6919 and numbers["profiles created"] == 2357, result.stdout
    engine = open_database(Settings(data_dir=directory, database_url=url))
    Processor(engine).run_until_caught_up()
    print(f"\nCDNOW import on {request.param}: {time.monotonic() - started:.1f} s")
    yield engine
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: The CDNOW tests share one import per engine: with xdist they run on one worker.
cdnow_group = pytest.mark.xdist_group("clv-cdnow")

#: 39 weeks: the paper's calibration period and its holdout.
WEEKS_39 = 273


@pytest.fixture(scope="module")
def cdnow_fit(cdnow_engine: sa.Engine) -> Fitted:
    started = time.monotonic()
    fitted = job("clv").fit(
        cdnow_engine,
        datetime(1997, 9, 30, tzinfo=UTC),
        {"unit": "weeks", "horizon_days": WEEKS_39, "holdout_days": 91},
    )
    print(f"\nCDNOW fit on {cdnow_engine.dialect.name}: {time.monotonic() - started:.2f} s")
    return fitted


@cdnow_group
def test_cdnow_reproduces_the_published_fits(cdnow_fit: Fitted) -> None:
    params = cdnow_fit.params
    print(f"\n{params['bgnbd']}\n{params['gamma_gamma']}")
    assert (cdnow_fit.kind, cdnow_fit.name) == ("clv", "clv")
    assert set(params["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(params["gamma_gamma"]) == {"p", "q", "v", "log_likelihood"}
    for name, value in PUBLISHED_BGNBD.items():
        assert close(params["bgnbd"][name], value), (name, params["bgnbd"][name], value)
    assert close(params["bgnbd"]["log_likelihood"], PUBLISHED_BGNBD_LL, 0.0001)
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert close(params["gamma_gamma"][name], value), (name, params["gamma_gamma"][name], value)
    assert (params["customers"], params["repeat_buyers"]) == (2357, 946)
    assert cdnow_fit.window == {"train_from": "1997-01-01", "train_until": "1997-09-30"}
    assert cdnow_fit.traits == ["p_alive", "expected_purchases", "expected_order_value", "expected_revenue"]
    orjson.dumps(params), orjson.dumps(cdnow_fit.quality), orjson.dumps(cdnow_fit.options)
    quality = cdnow_fit.quality
    print(quality)
    assert quality["holdout_from"] == "1997-07-02" and quality["customers"] == 2357
    assert 0.6 < quality["churn"]["auc"] <= 1 and quality["churn"]["top_decile_lift"] > 1
    assert close(quality["purchases"]["predicted_total"], quality["purchases"]["actual_total"], 0.25)


@cdnow_group
def test_cdnow_scores(cdnow_engine: sa.Engine, cdnow_fit: Fitted) -> None:
    started = time.monotonic()
    scores = dict(job("clv").score(cdnow_engine, cdnow_fit, datetime(1997, 9, 30, 8, tzinfo=UTC)))
    print(f"\nCDNOW scoring on {cdnow_engine.dialect.name}: {time.monotonic() - started:.2f} s")
    assert len(scores) == 2357
    first = scores[profile_of(cdnow_engine, "user_id", "0001")]
    assert list(first) == ["p_alive", "expected_purchases", "expected_order_value", "expected_revenue"]
    # the customer of the hand-checked test, with the fitted instead of the published parameters
    assert close(first["expected_purchases"], 1.226, 0.01) and close(first["p_alive"], 0.7266, 0.01)
    gg = cdnow_fit.params["gamma_gamma"]
    mean_spend = (29.73 + 14.96) / 2
    assert close(
        first["expected_order_value"], gg["p"] * (gg["v"] + 2 * mean_spend) / (gg["p"] * 2 + gg["q"] - 1)
    )
    assert first["expected_revenue"] == pytest.approx(
        first["expected_purchases"] * first["expected_order_value"], rel=1e-6
    )
    assert all(v == round(v, 6) for v in first.values())
    # a later day sees the later orders: customer 0001 bought again on 12 December 1997
    later = dict(job("clv").score(cdnow_engine, cdnow_fit, datetime(1997, 12, 12, tzinfo=UTC)))
    assert later[profile_of(cdnow_engine, "user_id", "0001")]["p_alive"] > first["p_alive"]


@cdnow_group
def test_cdnow_holdout_is_the_papers_calibration_period(cdnow_engine: sa.Engine) -> None:
    """Fitted up to 30 June 1998 with a 39-week holdout, the quality refit is the paper's fit."""
    fitted = job("clv").fit(
        cdnow_engine, datetime(1998, 6, 30, tzinfo=UTC), {"unit": "weeks", "holdout_days": WEEKS_39}
    )
    quality = fitted.quality
    print(f"\nCDNOW holdout quality on {cdnow_engine.dialect.name}: {quality}")
    assert quality["holdout_from"] == "1997-10-01" and quality["holdout_until"] == "1998-06-30"
    for name, value in PUBLISHED_BGNBD.items():
        assert close(quality["bgnbd"][name], value)
    assert close(quality["purchases"]["predicted_total"], quality["purchases"]["actual_total"], 0.15)
    assert quality["purchases"]["correlation"] > 0.5
    assert quality["churn"]["auc"] > 0.7


@cdnow_group
def test_p_alive_baseline(cdnow_engine: sa.Engine) -> None:
    baseline = clv.p_alive_baseline(cdnow_engine, datetime(1997, 9, 30, tzinfo=UTC))
    assert len(baseline) == 2357 and all(0 < v <= 1 for v in baseline.values())
    assert baseline[profile_of(cdnow_engine, "user_id", "0003")] == 1.0  # one purchase only
    assert 0 < baseline[profile_of(cdnow_engine, "user_id", "0001")] < 1


@cdnow_group
def test_the_fit_reads_nothing_after_the_cutoff(cdnow_engine: sa.Engine, cdnow_fit: Fitted) -> None:
    """Orders after `until` (the sample runs to June 1998) change neither the fit nor the window."""
    again = job("clv").fit(
        cdnow_engine,
        datetime(1997, 9, 30, 23, 59, tzinfo=UTC),
        {"unit": "weeks", "horizon_days": WEEKS_39, "holdout_days": 91},
    )
    assert again.params == cdnow_fit.params and again.quality == cdnow_fit.quality
    days = read_purchase_days(cdnow_engine, date(1997, 9, 30))
    assert int(days.day.max()) == (date(1997, 9, 30) - date(1970, 1, 1)).days
    assert (date(1997, 9, 30) - timedelta(days=0)).isoformat() == cdnow_fit.window["train_until"]


@cdnow_group
def test_cdnow_through_the_cli_prints_the_published_fits_and_stores_the_model(
    cdnow_engine: sa.Engine, tmp_path: Path
) -> None:
    """The data scientist's command (keep its name and keys): `opencdp predict fit clv --until
    1997-09-30 --unit weeks --json`, then `predict score` writes the traits, `predict show` has the card."""
    from opencdp.cli import main

    env = {
        "OPENCDP_DATABASE_URL": cdnow_engine.url.render_as_string(hide_password=False),
        "OPENCDP_DATA_DIR": str(tmp_path),
        "OPENCDP_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    args = ["predict", "fit", "clv", "--until", "1997-09-30", "--unit", "weeks", "--json"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    printed = orjson.loads(result.stdout)
    for name, value in PUBLISHED_BGNBD.items():
        assert close(printed["bgnbd"][name], value), (name, printed["bgnbd"])
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert close(printed["gamma_gamma"][name], value), (name, printed["gamma_gamma"])
    assert {"log_likelihood"} <= set(printed["bgnbd"]) & set(printed["gamma_gamma"])
    assert printed["name"] == "clv" and printed["status"] == "ready" and printed["version"] >= 1
    scored = CliRunner().invoke(main, ["predict", "score", "clv", "--at", "1997-09-30"], env=env)
    assert scored.exit_code == 0 and "scored 2357 profiles" in scored.output, scored.output
    card = orjson.loads(CliRunner().invoke(main, ["predict", "show", "clv", "--json"], env=env).stdout)
    assert card["scored_count"] == 2357 and card["window"]["train_until"] == "1997-09-30"
    with cdnow_engine.connect() as conn:
        predicted = conn.execute(
            sa.select(profiles.c.predicted).where(
                profiles.c.id == profile_of(cdnow_engine, "user_id", "0001")
            )
        ).scalar_one()
    assert set(predicted) == {"p_alive", "expected_purchases", "expected_order_value", "expected_revenue"}


@cdnow_group
def test_a_holdout_before_the_first_orders_is_skipped_with_the_reason(cdnow_engine: sa.Engine) -> None:
    fitted = job("clv").fit(cdnow_engine, datetime(1997, 9, 30, tzinfo=UTC), {"holdout_days": WEEKS_39})
    assert fitted.quality == {"holdout_days": WEEKS_39, "skipped": fitted.quality["skipped"]}
    assert "only 0 customers ordered by 1996-12-31" in fitted.quality["skipped"]
    assert fitted.params["unit"] == "days" and close(fitted.params["bgnbd"]["alpha"], 4.414 * 7)
