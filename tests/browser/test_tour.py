"""A browser tour of the live view, as an analyst and as an operator, in the language a Chinese risk centre
reads (zh-CN) and in English, on hits from a running worker. Each step saves a screenshot in
test-output/tour/ and asserts what the user checks at that step."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis

from pipeline.contracts import events as c
from pipeline.contracts import sites
from pipeline.contracts.commands import DRIFT_STREAM_KEY, LIVE_STREAM_KEY
from tests.browser.conftest import ANALYST, OPERATOR, OUT, page_in
from tests.conftest import Stack, declaration, now_ms, weighbridge

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]  # ~1-2 min with the worker
TOUR = OUT / "tour"


@dataclass(frozen=True)
class Hit:
    conveyance_id: str
    command_id: str
    port: str
    lane: str
    severity: str
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class TourHits:
    eht: Hit  # coal at Erenhot, 20% over the declared weight on the weighbridge, with a GPS track
    gqm: Hit  # copper ore at Ganqimaodu, over the declared weight
    split: Hit  # the third just-under-threshold declaration of one enterprise in a day (化整为零)


def _wait_hits(
    r: redis.Redis, rules: dict[str, str], want: int | None = None, timeout_s: float = 40.0
) -> dict[str, Hit]:
    """The worker's hits by conveyance where the given rule fired, read from the live stream the page reads;
    all of them, or ``want`` of them."""
    import time

    found: dict[str, Hit] = {}
    deadline = time.monotonic() + timeout_s
    want = len(rules) if want is None else want
    while time.monotonic() < deadline and len(found) < want:
        for _, fields in r.xrevrange(LIVE_STREAM_KEY, count=2000):
            cmd = orjson.loads(fields[b"c"])
            if rules.get(cmd["conveyance_id"]) in cmd["rule_ids"]:
                found[cmd["conveyance_id"]] = Hit(
                    cmd["conveyance_id"],
                    cmd["command_id"],
                    cmd["port"],
                    cmd["lane"],
                    cmd["severity"],
                    tuple(cmd["rule_ids"]),
                )
        time.sleep(0.2)
    assert len(found) >= want, f"the worker did not hit {rules} (found {sorted(found)}): see its log"
    return found


@pytest.fixture(scope="module")
def tour_hits(stack: Stack) -> TourHits:
    u = uuid.uuid4().hex[:8]
    t = now_ms()
    # a truck on the Erenhot corridor: GPS points from the crossing to the port, then the weighbridge
    (lat0, lon0), (lat1, lon1) = sites.CROSSINGS["EHT"], sites.PORTS["EHT"].pos
    for i in range(5):
        f = i / 4
        stack.send(
            c.TRACKS,
            {
                "conveyance_id": f"TOURA-{u}",
                "ts_ms": t - (5 - i) * 120_000,
                "lat": lat0 + (lat1 - lat0) * f,
                "lon": lon0 + (lon1 - lon0) * f,
                "speed_kmh": 35.0,
            },
        )
    stack.send(c.LOGISTICS, weighbridge(u, "TOURA", measured_kg=36_000))
    stack.send(c.DECLARATIONS, declaration(u, "TOURA", gross_kg=30_000))
    stack.send(c.LOGISTICS, weighbridge(u, "TOURB", measured_kg=37_500, port="GQM"))
    stack.send(
        c.DECLARATIONS,
        declaration(u, "TOURB", gross_kg=30_000, port="GQM", hs_code="260300", goods="copper ore"),
    )
    for i in range(5):  # timber in five declarations, each just under the 50,000 CNY threshold
        # weighed as declared: a road declaration is decided once its weighbridge reading is joined
        stack.send(c.LOGISTICS, weighbridge(u, f"TOURC{i}", measured_kg=20_000))
        stack.send(
            c.DECLARATIONS,
            declaration(
                u,
                f"TOURC{i}",
                ts_ms=t + i * 1000,
                hs_code="440320",
                goods="timber",
                enterprise_id=f"ETOUR{u}",
                value_cny=46_000.0 + i * 500,
                gross_kg=20_000.0,
                net_kg=19_000.0,
            ),
        )
    r = redis.Redis.from_url(stack.srv.redis_url)
    found = _wait_hits(r, {f"TOURA-{u}": "weighbridge_excess", f"TOURB-{u}": "weighbridge_excess"})
    # the declarations of one enterprise travel on five keys (partitions): the third one processed hits
    split = _wait_hits(r, {f"TOURC{i}-{u}": "split_shipments" for i in range(5)}, want=1)
    return TourHits(found[f"TOURA-{u}"], found[f"TOURB-{u}"], next(iter(split.values())))


def _rows(page: Any) -> list[dict[str, str]]:
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('#hits tbody tr')].map((tr) => ({id: tr.dataset.id,
            port: tr.dataset.port, lane: tr.dataset.lane, severity: tr.dataset.severity,
            rules: tr.dataset.rules, text: tr.innerText}))"""
        )
    )


def _filter(page: Any, **choice: str) -> list[dict[str, str]]:
    """Choose filters (others back to 'all') and return the rows shown once the list is redrawn."""
    for name in ("port", "lane", "severity", "rule"):
        page.select_option(f"#f-{name}", choice.get(name, ""))
    page.evaluate("() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))")
    return _rows(page)


def _shot(page: Any, name: str, show: str = "header") -> None:
    """A screenshot of the window (the list may hold hundreds of rows), scrolled to ``show``."""
    TOUR.mkdir(parents=True, exist_ok=True)
    # one step in the page: the live view redraws its tables every few seconds, so a located element can be
    # replaced between finding it and scrolling to it
    page.evaluate("(s) => document.querySelector(s)?.scrollIntoView({block: 'nearest'})", show)
    page.screenshot(path=str(TOUR / f"{name}.png"))


def _login(page: Any, base: str, token: str) -> None:
    page.goto(base)
    page.wait_for_selector("#login:not([hidden])", timeout=15_000)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=15_000)


def _stat(page: Any, table: str, key: str) -> dict[str, str]:
    row = page.locator(f"#{table} tr[data-key='{key}']")
    row.wait_for(timeout=15_000)
    return {
        "results": row.get_attribute("data-results") or "0",
        "confirmed": row.get_attribute("data-confirmed") or "0",
        "hit_rate": row.get_attribute("data-hit-rate") or "",
        "rate_text": row.locator("td.rate").inner_text(),
    }


def test_analyst_tour_in_chinese_then_english(
    web: tuple[str, str], browser: Any, tour_hits: TourHits
) -> None:
    base, _ = web
    a, b, split = tour_hits.eht, tour_hits.gqm, tour_hits.split
    with page_in(browser, "zh-CN") as page:
        # 1. a browser that asks for Chinese gets the Chinese login
        page.goto(base)
        page.wait_for_selector("#login:not([hidden])", timeout=15_000)
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert "访问令牌" in page.inner_text("#login") and "登录" in page.inner_text("#login")
        _shot(page, "01-analyst-login-zh")

        # 2. logged in: the header says 布控, the columns and the role are in Chinese
        _login(page, base, ANALYST)
        assert "布控" in page.inner_text("header h1") and "实时布控命中" in page.inner_text("header h1")
        assert page.inner_text("#who") == "分析员（只读）"
        heads = page.locator("#hits thead th").all_inner_texts()
        assert heads == ["时间", "口岸", "处置方式", "风险等级", "运输工具", "规则", "风险分", "状态"]
        for hit in (a, b, split):
            page.locator(f"#hits tbody tr[data-id='{hit.command_id}']").wait_for(timeout=15_000)
        row_a = page.locator(f"#hits tbody tr[data-id='{a.command_id}']").inner_text()
        assert "二连浩特" in row_a and "查验" in row_a and "高" in row_a and "地磅超重" in row_a
        assert "已下发" in row_a
        _shot(page, "02-analyst-live-zh")

        # 3. filter by port: only Ganqimaodu's hits, shown by their Chinese name
        rows = _filter(page, port="GQM")
        assert rows and all(r["port"] == "GQM" for r in rows)
        assert b.command_id in {r["id"] for r in rows} and a.command_id not in {r["id"] for r in rows}
        assert all("甘其毛都" in r["text"] for r in rows)
        _shot(page, "03-filter-port-zh")

        # 4. filter by lane: physical inspection (查验) only
        rows = _filter(page, lane="physical_inspection")
        ids = {r["id"] for r in rows}
        assert rows and all(r["lane"] == "physical_inspection" and "查验" in r["text"] for r in rows)
        assert a.command_id in ids and b.command_id in ids
        assert (split.command_id in ids) == (split.lane == "physical_inspection")
        _shot(page, "04-filter-lane-zh")

        # 5. filter by severity: high (高) only
        rows = _filter(page, severity="high")
        ids = {r["id"] for r in rows}
        assert rows and all(r["severity"] == "high" for r in rows) and a.command_id in ids
        assert (split.command_id in ids) == (split.severity == "high")
        _shot(page, "05-filter-severity-zh")

        # 6. filter by rule, chosen by its Chinese title
        labels = page.locator("#f-rule option").all_inner_texts()
        assert "地磅超重" in labels and "化整为零" in labels
        rows = _filter(page, rule="weighbridge_excess")
        ids = {r["id"] for r in rows}
        assert rows and all("weighbridge_excess" in r["rules"].split() for r in rows)
        assert {a.command_id, b.command_id} <= ids and split.command_id not in ids
        _shot(page, "06-filter-rule-zh")

        # 7. open the Erenhot hit: why (rules with evidence, model factors), joined facts, track, status
        _filter(page)
        page.click(f"#hits tbody tr[data-id='{a.command_id}']")
        page.wait_for_selector("#detail h2", timeout=10_000)
        reason = page.locator("#detail li[data-rule='weighbridge_excess']").inner_text()
        assert "地磅超重" in reason and "weighbridge 36000 kg vs declared 30000 kg" in reason
        assert "weigh_excess_ratio = 0.2" in reason  # the evidence the rule used
        detail = page.inner_text("#detail")
        assert "布控理由" in detail and "信息对碰（关联数据）" in detail and "车辆轨迹" in detail
        assert "二连浩特" in page.inner_text("#detail h2") and "查验" in page.inner_text("#detail h2")
        assert page.locator("#detail #st").get_attribute("data-status") == "sent"
        assert page.inner_text("#detail #st") == "已下发"
        assert page.locator("#detail svg#map polyline.track").count() == 1  # the truck's GPS track
        if page.locator("#detail ul.factors li").count():  # the model explains itself once it has weights
            assert "风险" in page.inner_text("#detail ul.factors")
        assert page.locator("#b-ack").count() == 0 and "分析员只读" in detail  # analysts read only
        _shot(page, "07-analyst-detail-zh")

        # 8. the switch turns every label English, and the choice survives a reload
        page.click("#lang button[data-lang='en']")
        assert page.evaluate("document.documentElement.lang") == "en"
        heads = page.locator("#hits thead th").all_inner_texts()
        assert heads == ["time", "port", "lane", "severity", "conveyance", "rules", "score", "status"]
        assert "Why" in page.inner_text("#detail") and "Joined facts" in page.inner_text("#detail")
        assert "Weighbridge well above the declared weight" in page.inner_text("#detail")
        assert "physical inspection" in page.inner_text("#detail h2")
        assert "Erenhot" in page.inner_text("#detail h2") and "二连浩特" not in page.inner_text("#detail h2")
        page.wait_for_function("document.querySelectorAll('#hits tbody tr').length > 0")
        assert "physical inspection" in page.locator(f"#hits tbody tr[data-id='{a.command_id}']").inner_text()
        _shot(page, "08-analyst-detail-en")
        page.reload()
        page.wait_for_selector("#app:not([hidden])", timeout=15_000)
        assert page.inner_text("#who") == "analyst (read-only)" and "live hit stream" in page.inner_text("h1")


def test_operator_tour_acknowledge_report_and_watch_the_rates(
    stack: Stack, web: tuple[str, str], browser: Any, tour_hits: TourHits
) -> None:
    from pipeline.core.model import DriftEvent

    base, _ = web
    b = tour_hits.gqm
    with page_in(browser, "zh-CN") as page:
        # 1. an operator logs in and sees the rates before acting
        _login(page, base, OPERATOR)
        assert page.inner_text("#who") == "处置员"
        page.wait_for_selector("#per-rule", timeout=15_000)
        rule_before = _stat(page, "per-rule", "weighbridge_excess")
        site_before = _stat(page, "per-site", "GQM")
        assert "地磅超重" in page.locator("#per-rule tr[data-key='weighbridge_excess']").inner_text()
        _shot(page, "09-operator-live-zh")

        # 2. open the Ganqimaodu hit and acknowledge it: the status moves to 已签收
        page.click(f"#hits tbody tr[data-id='{b.command_id}']")
        page.wait_for_selector("#detail h2", timeout=10_000)
        assert page.inner_text("#detail #st") == "已下发"
        page.click("#b-ack")
        page.wait_for_function("document.querySelector('#detail #st').dataset.status === 'acknowledged'")
        assert page.inner_text("#detail #st") == "已签收"
        assert page.inner_text("#act-msg") == "已签收"
        assert "已签收" in page.locator(f"#hits tbody tr[data-id='{b.command_id}']").inner_text()
        _shot(page, "10-operator-acknowledged-zh")

        # 3. report the inspection result; the worker records it and the status moves to 已反馈
        # a violation raises the rule's hit rate unless it is already 100%; then a clean result lowers it
        outcome = "clean" if rule_before["hit_rate"] in ("1", "1.0") else "violation"
        page.select_option("#r-outcome", outcome)
        page.fill("#r-value", "125000")
        page.fill("#r-notes", "5.6 t over the declared weight")
        page.click("#b-result")
        page.wait_for_function("document.querySelector('#act-msg').dataset.status === 'result_sent'")
        assert page.inner_text("#act-msg") == "结果已提交"
        page.wait_for_function(
            "document.querySelector('#detail #st').dataset.status === 'result'", timeout=40_000
        )
        assert page.inner_text("#detail #st") == "已反馈"
        want = {"violation": "查获违规", "clean": "未见异常"}[outcome]
        assert page.inner_text("#detail #outcome") == want
        _shot(page, "11-operator-result-zh")

        # 4. the rule's and the site's hit rates move with the result
        page.wait_for_function(
            "(n) => { const tr = document.querySelector(\"#per-rule tr[data-key='weighbridge_excess']\");"
            " return tr && +tr.dataset.results > n; }",
            arg=int(rule_before["results"]),
            timeout=20_000,
        )
        rule_after = _stat(page, "per-rule", "weighbridge_excess")
        site_after = _stat(page, "per-site", "GQM")
        assert int(rule_after["results"]) == int(rule_before["results"]) + 1
        assert int(rule_after["confirmed"]) == int(rule_before["confirmed"]) + (outcome == "violation")
        assert rule_after["hit_rate"] != rule_before["hit_rate"]
        assert rule_after["rate_text"] != rule_before["rate_text"] and rule_after["rate_text"].endswith("%")
        assert int(site_after["results"]) == int(site_before["results"]) + 1
        _shot(page, "12-operator-rates-zh", "#per-rule")

        # 5. a drift event, as the feedback agent writes it (agents/runtime.py), shows up in Chinese
        ev = DriftEvent("model_drift", now_ms(), 7, 512, 0.12, 0.31)
        redis.Redis.from_url(stack.srv.redis_url).xadd(
            DRIFT_STREAM_KEY, {"d": orjson.dumps(ev.as_dict())}, maxlen=1000, approximate=True
        )
        drift = page.locator(f"#drift li[data-ts='{ev.ts_ms}']")
        drift.wait_for(timeout=15_000)
        assert "模型误差 0.12 → 0.31（模型 v7）" in drift.inner_text()
        assert "模型漂移" in page.inner_text("#stats")
        _shot(page, "13-operator-drift-zh", "#drift")
