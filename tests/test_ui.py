"""The dashboard (/ui) end to end: a seeded SQLite ledger behind a real gateway on loopback; the JSON
endpoints' numbers checked against the ledger's rows summed here with Decimal; the page driven in a real
headless Chromium (Debian `chromium` + `chromium-driver`, through Selenium): it loads with the key,
charts render the seeded data, filters change what is shown, and the browser logs no console error.
`HEDGEWAY_SCREENSHOT=docs/ui.png python -m pytest tests/test_ui.py` also refreshes the README's screenshot
(otherwise it goes to a temporary directory: a test run never changes the checkout)."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from conftest import MASTER, gateway_config
from test_ledger_postgres import pg, pg_admin, pg_url  # noqa: F401  (the shared PostgreSQL fixtures)

from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import Record, SQLiteStore
from hedgeway.ledger.dashboard import Dashboard

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DAY = 86400


def seeded(now: float) -> list[Record]:
    """~400 rows over the last 20 days (two teams, three keys, two models, tiers, cache hits, errors) and
    one expensive row 60 days ago that only since=all includes."""
    rng = random.Random(3)
    rows = []
    for i in range(400):
        model = rng.choice(["gpt-4o-mini", "sim"])
        err = i % 17 == 0
        cache = rng.choice(["miss", "hit-exact", "hit-semantic", "bypass", None])
        hit = cache in ("hit-exact", "hit-semantic")
        cost = Decimal(rng.randrange(1, 10 ** 6)) / Decimal(10 ** 9)
        rows.append(Record(
            request_id=f"seed-{i}", ts=now - 3600 - rng.random() * 20 * DAY, endpoint="chat", model_name=model,
            deployment=("ok-mini" if model == "gpt-4o-mini" else "sim-1"), provider="openai",
            status=500 if err else 200, key_id=f"k{i % 3}", team=("alpha", "beta")[i % 2],
            error_type="api_error" if err else None, prompt_tokens=10, completion_tokens=5,
            cost=Decimal(0) if hit or err else cost, latency_ms=100.0 + i, ttft_ms=None if i % 4 else 20.0 + i,
            route=json.dumps({"router": "tiers", "tier": ("cheap", "strong")[i % 3 == 0]}) if model == "sim" else None,
            cache=cache, saved=cost if hit else Decimal(0)))
    rows.append(Record(request_id="seed-old", ts=now - 60 * DAY, endpoint="chat", model_name="gpt-4o-mini",
                       deployment="ok-mini", provider="openai", status=200, key_id="k0", team="alpha",
                       cost=Decimal("123.456789012345")))
    return rows


@pytest.fixture(scope="module")
def ui(upstream, tmp_path_factory):
    """(gateway, ledger rows) — the seeded rows plus one live request that settles the global budget
    into its alert band (0.0000045 of 0.000008 ≥ the 0.5 threshold; the reservation, $0.00000792, fits)."""
    db = tmp_path_factory.mktemp("ui") / "ledger.db"
    store = SQLiteStore(db)
    store.migrate()
    cfg = gateway_config(upstream.base_url, f"sqlite:///{db}",
                         limits={"budgets": [{"limit": "0.000008", "period": "daily"}],
                                 "alerts": {"thresholds": [0.3, 0.5]}})
    with BackgroundGateway(from_dict(cfg)) as gw:
        status, _ = call(gw, "POST", "/v1/chat/completions",
                         {"model": "gpt-4o-mini", "max_tokens": 5,
                                 "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200
        # seeded after start: a gateway restores today's spend from the ledger, and the budget is for the live one
        store.write(seeded(time.time()))
        deadline = time.time() + 5
        while len(store.records()) < 402 and time.time() < deadline:
            time.sleep(0.05)
        rows = store.records()
        assert len(rows) == 402
        yield gw, rows
    store.close()


def call(gw, method: str, path: str, body=None, key: str | None = MASTER):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else b"", headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, (orjson.loads(payload) if resp.getheader("content-type", "").startswith("application/json")
                         else payload)


def recent(rows, days=30):
    return [r for r in rows if r.ts >= time.time() - days * DAY]


# --- JSON endpoints ---
def test_spend_by_team_is_exact(ui):
    gw, rows = ui
    status, body = call(gw, "GET", "/ui/api/spend?by=team&period=total&since=30d")
    assert status == 200
    want = defaultdict(Decimal)
    for r in recent(rows):
        want[r.team] += r.cost
    assert {s["name"]: Decimal(s["total"]) for s in body["series"]} == dict(want)
    assert body["periods"] == ["total"]
    assert Decimal(body["totals"]["cost"]) == sum(want.values())
    assert body["totals"]["requests"] == len(recent(rows))
    _, everything = call(gw, "GET", "/ui/api/spend?by=team&period=total&since=all")
    assert Decimal(everything["totals"]["cost"]) == sum(r.cost for r in rows)  # the 60-day-old row counts


def test_spend_per_day_by_model(ui):
    gw, rows = ui
    _, body = call(gw, "GET", "/ui/api/spend?by=model&period=day&since=30d")
    want = defaultdict(Decimal)
    for r in recent(rows):
        want[(time.strftime("%Y-%m-%d", time.gmtime(r.ts)), r.model_name)] += r.cost
    got = {(p, s["name"]): Decimal(c) for s in body["series"] for p, c in zip(body["periods"], s["cost"])
           if (p, s["name"]) in want or Decimal(c)}
    assert got == dict(want)
    assert body["periods"] == sorted({p for p, _ in want})


def test_routes_cache_errors_latency(ui):
    gw, rows = ui
    rows = recent(rows)
    _, routes = call(gw, "GET", "/ui/api/routes?since=30d")
    tiers = defaultdict(int)
    for r in rows:  # requests with no tier or deployment are named for why, never null
        hit = "(cache hit)" if (r.cache or "").startswith("hit") else None
        tiers[(json.loads(r.route).get("tier") if r.route else None) or hit or "(not tiered)"] += 1
    assert {t["name"]: t["requests"] for t in routes["tiers"]} == dict(tiers)
    assert None not in tiers
    deps = defaultdict(Decimal)
    for r in rows:
        deps[r.deployment or ("(cache hit)" if (r.cache or "").startswith("hit") else "(no deployment)")] += r.cost
    assert {d["name"]: Decimal(d["cost"]) for d in routes["deployments"]} == dict(deps)

    _, cache = call(gw, "GET", "/ui/api/cache?since=30d")
    hits = sum(r.cache in ("hit-exact", "hit-semantic") for r in rows)
    misses = sum(r.cache == "miss" for r in rows)
    assert (cache["hits"], cache["lookups"]) == (hits, hits + misses)
    assert cache["hit_rate"] == pytest.approx(hits / (hits + misses))
    assert Decimal(cache["saved"]) == sum(r.saved for r in rows) > 0

    _, errors = call(gw, "GET", "/ui/api/errors?since=30d")
    assert errors["errors"] == sum(r.status >= 400 for r in rows) > 0
    assert errors["types"] == {"api_error": errors["errors"]}

    _, latency = call(gw, "GET", "/ui/api/latency?since=30d")
    import numpy as np
    sim = [r for r in rows if r.model_name == "sim" and r.status < 400]
    row = next(m for m in latency["models"] if m["model"] == "sim")
    assert row["requests"] == len(sim)
    assert row["latency_ms"]["p90"] == pytest.approx(np.percentile([r.latency_ms for r in sim], 90), abs=1e-3)
    assert row["ttft_ms"]["p50"] == pytest.approx(np.median([r.ttft_ms for r in sim if r.ttft_ms is not None]),
                                                  abs=1e-3)


def test_live_budgets_and_breakers(ui):
    gw, rows = ui
    (live_row,) = [r for r in rows if not r.request_id.startswith("seed-")]
    _, live = call(gw, "GET", "/ui/api/live")
    (budget,) = live["budgets"]
    assert (budget["scope"], budget["period"], budget["state"], budget["threshold"]) == ("global", "daily", "alert", 0.5)
    assert Decimal(budget["spent"]) == live_row.cost and Decimal(budget["limit"]) == Decimal("0.000008")
    assert live["breakers"]["gpt-4o-mini/openai/ok-mini"]["state"] == "closed"
    assert live["breakers"]["gpt-4o-mini/openai/ok-mini"]["calls"] >= 1
    assert live["canaries"] == []


def test_auth_and_bad_input(ui):
    gw, _ = ui
    assert call(gw, "GET", "/ui/api/spend", key=None)[0] == 401
    assert call(gw, "GET", "/ui/api/spend", key="sk-wrong")[0] == 401
    status, key = call(gw, "POST", "/admin/keys", {"team": None, "metadata": {"role": "admin"}})
    assert status == 201
    assert call(gw, "GET", "/ui/api/cache", key=key["key"])[0] == 200
    _, plain = call(gw, "POST", "/admin/keys", {})
    status, err = call(gw, "GET", "/ui/api/cache", key=plain["key"])
    assert status == 403 and err["error"]["code"] == "admin_only"
    status, err = call(gw, "GET", "/ui/api/spend?by=prompt")
    assert status == 400 and err["error"]["param"] == "by"
    assert call(gw, "GET", "/ui/api/spend?since=yesterday")[0] == 400
    assert call(gw, "GET", "/ui/api/spend?sort=1")[0] == 400
    assert call(gw, "GET", "/ui/api/nope")[0] == 404
    assert call(gw, "POST", "/ui/api/spend")[0] == 405
    status, page = call(gw, "GET", "/ui", key=None)  # the page itself holds no data
    assert status == 200 and b"/ui/app.js" in page


# --- the aggregates on both backends, including costs the SQLite integer fast path must not take ---
ODD = [Decimal("0.000000000000001"), Decimal("5000.25"), Decimal("0.1"), Decimal("0.000000123456789")]


def _odd_rows(now: float) -> list[Record]:
    return [Record(request_id=f"odd-{i}", ts=now - i, endpoint="chat", model_name="m", deployment="d",
                   provider="p", status=200, team=("a", "b")[i % 2], cost=c, saved=c, cache="hit-exact",
                   latency_ms=float(i)) for i, c in enumerate(ODD)]


def _check_odd(store) -> None:
    """Sums equal the stored costs summed as Decimal (PostgreSQL's NUMERIC(24, 12) rounds on insert)."""
    board = Dashboard(store)
    costs = {r.request_id: Decimal(r.cost) for r in store.records()}
    spend = board.spend("team", "total", None)
    want = {"a": costs["odd-0"] + costs["odd-2"], "b": costs["odd-1"] + costs["odd-3"]}
    assert {s["name"]: Decimal(s["total"]) for s in spend["series"]} == want
    assert Decimal(board.cache(None)["saved"]) == sum(costs.values())
    assert Decimal(board.routes(None)["deployments"][0]["cost"]) == sum(costs.values())
    assert board.latency(None)["models"][0]["latency_ms"]["p50"] == 1.5


def test_sqlite_sums_stay_exact_beyond_the_fast_path(tmp_path):
    store = SQLiteStore(tmp_path / "odd.db")
    store.migrate()
    store.write(_odd_rows(time.time()))
    _check_odd(store)
    assert Dashboard(store).spend("team", "total", None)["totals"]["cost"] == "5000.35000012345679"  # via dsum: 15 decimals
    store.close()


def test_postgres_aggregates(pg):  # noqa: F811  (the fixture imported above)
    pg.write(_odd_rows(time.time()))
    _check_odd(pg)


# --- the page in a real Chromium ---
@pytest.fixture(scope="module")
def browser():
    from conftest import require_service
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)) or not os.path.exists(DRIVER):
        require_service("chromium", "apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require_service("selenium", "pip install -e '.[test]'")

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1900", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _loaded(driver, after: float) -> None:
    deadline = time.time() + 15
    while time.time() < deadline:
        stamp = driver.execute_script("return document.body.dataset.loaded || ''")
        if stamp and int(stamp) > after * 1000:
            return
        time.sleep(0.05)
    raise AssertionError("the dashboard did not finish loading")


def _severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_renders_seeded_data(ui, browser, tmp_path):
    gw, rows = ui
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"http://127.0.0.1:{gw.port}/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"http://127.0.0.1:{gw.port}/ui")
    assert browser.find_element(By.ID, "login").is_displayed()
    assert not browser.find_element(By.ID, "panels").is_displayed()
    t = time.time()
    browser.find_element(By.ID, "key").send_keys(MASTER)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    _loaded(browser, t)

    month = recent(rows)
    assert browser.find_element(By.ID, "spend-total").text.endswith(f"· {len(month)} requests")
    bars = browser.find_elements(By.CSS_SELECTOR, "#spend-chart svg rect.bar")
    assert len(bars) >= 20  # ~20 days × 2 models
    legend = {e.get_attribute("data-series") for e in browser.find_elements(By.CSS_SELECTOR, "#spend-legend span")}
    assert legend == {"gpt-4o-mini", "sim"}
    tiers = {e.get_attribute("data-name") for e in browser.find_elements(By.CSS_SELECTOR, "#tiers rect.bar")}
    assert tiers == {"cheap", "strong", "(cache hit)", "(not tiered)"}  # nulls named for why
    hits = sum(r.cache in ("hit-exact", "hit-semantic") for r in month)
    lookups = hits + sum(r.cache == "miss" for r in month)
    assert browser.find_element(By.ID, "hit-rate").text == f"{100 * hits / lookups:.1f}%"
    assert browser.find_element(By.ID, "status").text == ""  # no panel failed
    assert browser.find_element(By.CSS_SELECTOR, "#budgets td.state-alert").text == "alert"
    assert "closed" in browser.find_element(By.ID, "breakers").text
    assert browser.find_element(By.ID, "canaries").text == "no canaries"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#latency tbody tr")) == 2
    assert browser.find_element(By.ID, "key").get_attribute("value") == ""  # the key left the form

    # filters: group by team, then widen to all time (the 60-day-old row appears)
    t = time.time()
    Select(browser.find_element(By.ID, "by")).select_by_value("team")
    _loaded(browser, t)
    legend = {e.get_attribute("data-series") for e in browser.find_elements(By.CSS_SELECTOR, "#spend-legend span")}
    assert legend == {"alpha", "beta", "(none)"}  # the live request was made with the master key: no team
    t = time.time()
    Select(browser.find_element(By.ID, "since")).select_by_value("all")
    _loaded(browser, t)
    assert browser.find_element(By.ID, "spend-total").text.startswith("$123.")
    assert browser.find_element(By.ID, "spend-total").text.endswith(f"· {len(rows)} requests")
    t = time.time()
    Select(browser.find_element(By.ID, "since")).select_by_value("30d")
    Select(browser.find_element(By.ID, "by")).select_by_value("model")
    _loaded(browser, t)
    time.sleep(0.2)  # the second change's refresh
    assert _severe(browser) == []
    shot = Path(os.environ.get("HEDGEWAY_SCREENSHOT") or tmp_path / "ui.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_page_rejects_a_wrong_key(ui, browser):
    gw, _ = ui
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{gw.port}/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"http://127.0.0.1:{gw.port}/ui")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.find_element(By.ID, "key").send_keys("sk-not-the-key")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    deadline = time.time() + 10
    while not browser.find_element(By.ID, "login-error").text and time.time() < deadline:
        time.sleep(0.05)
    assert "Incorrect API key" in browser.find_element(By.ID, "login-error").text
    assert not browser.find_element(By.ID, "panels").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('hedgeway.ui.key')") is None
    assert any("401" in m for m in _severe(browser))  # the failed fetches, as the browser reports them
