"""The live view in headless Chromium: a hit from the running pipeline appears live; its detail opens."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import contracts as c
from pipeline.embedded import free_port
from pipeline.settings import Secret, Settings
from pipeline.web.server import run_web_in_thread
from tests.conftest import Stack, declaration, weighbridge

pytestmark = [pytest.mark.browser, pytest.mark.integration]
OUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[tuple[str, str]]:
    settings = Settings(
        analyst_token=Secret("browser-analyst"),
        operator_token=Secret("browser-operator"),
        web_port=free_port(),
    )
    stop = run_web_in_thread(settings, stack.srv.redis_url, stack.srv.kafka)
    try:
        yield f"http://127.0.0.1:{settings.web_port}/", "browser-operator"
    finally:
        stop()


def test_a_live_hit_appears_and_its_detail_opens(stack: Stack, web: tuple[str, str], uid: str) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium missing: run docker/install-system-deps.sh"
    base, token = web
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}#token={token}")
            page.wait_for_selector("#app:not([hidden])", timeout=15_000)
            assert token not in page.content()  # the token leaves the URL and never lands in the page
            # the pipeline produces the hit while the page is open
            stack.send(c.LOGISTICS, weighbridge(uid, "BROWSER", measured_kg=36_000))
            stack.send(c.DECLARATIONS, declaration(uid, "BROWSER", gross_kg=30_000))
            row = page.locator(f"#hits tbody tr:has-text('BROWSER-{uid}')")
            row.wait_for(timeout=20_000)
            assert "physical_inspection" in row.inner_text()
            row.click()
            page.wait_for_selector("#detail h2", timeout=10_000)
            detail = page.inner_text("#detail")
            assert "weighbridge 36000 kg vs declared 30000 kg" in detail
            assert "Joined facts" in detail and "weigh_excess_ratio" in detail
            assert (
                page.locator("#detail svg#map polyline").count() >= 1
            )  # border and corridors, drawn offline
            page.click("#b-ack")
            page.wait_for_function("document.querySelector('#act-msg').textContent === 'acknowledged'")
            page.screenshot(path=str(OUT / "live-view.png"), full_page=True)
        finally:
            browser.close()


def test_the_page_keeps_up_with_100_hits_per_second(stack: Stack, web: tuple[str, str], uid: str) -> None:
    import time

    import orjson
    import redis
    from playwright.sync_api import sync_playwright

    from pipeline.commands import LIVE_STREAM_KEY, make_command

    base, token = web
    r = redis.Redis.from_url(stack.srv.redis_url)
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}#token={token}")
            page.wait_for_selector("#app:not([hidden])", timeout=15_000)
            # the longest gap between animation frames while hits pour in: a frozen page has long gaps
            page.evaluate("""() => { window.maxGap = 0; let last = performance.now();
                const tick = (t) => { window.maxGap = Math.max(window.maxGap, t - last); last = t;
                requestAnimationFrame(tick); }; requestAnimationFrame(tick); }""")
            sent = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5.0:  # 100 hits per second for 5 seconds
                pipe = r.pipeline(transaction=False)
                for _ in range(10):
                    sent += 1
                    decl = {
                        "decl_id": f"D-{uid}-{sent}",
                        "conveyance_id": f"LOAD-{uid}-{sent}",
                        "enterprise_id": "E1",
                        "port": "EHT",
                        "ts_ms": 1_790_000_000_000,
                    }
                    cmd = make_command(
                        decl=decl,
                        lane="document_check",
                        site="EHT",
                        severity="medium",
                        score=0.5,
                        reasons=[],
                        rule_ids=["load"],
                        pack_version=1,
                        decided_ts_ms=1_790_000_000_000,
                        deadline_ts_ms=1_790_000_100_000,
                    )
                    pipe.xadd(LIVE_STREAM_KEY, {"c": orjson.dumps(cmd)}, maxlen=10_000, approximate=True)
                pipe.execute()
                time.sleep(0.1)
            page.wait_for_function(
                f"document.querySelector('#counter').textContent.includes('{sent}')"
                " || document.querySelectorAll('#hits tbody tr').length >= 500",
                timeout=10_000,
            )
            rows = page.locator("#hits tbody tr").count()
            max_gap = page.evaluate("window.maxGap")
            assert rows == min(500, rows) and rows >= min(sent, 500) * 0.9
            assert max_gap < 1000, f"the page froze for {max_gap:.0f} ms"
        finally:
            browser.close()
