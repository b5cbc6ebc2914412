"""Browser fixtures: the live view served from a thread on the session's embedded Redis and broker, and
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) with a chosen language."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.apps.web.server import run_web_in_thread
from pipeline.contracts.settings import Settings
from pipeline.io.embedded import free_port
from tests.conftest import Stack

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
ANALYST = "browser-analyst"
OPERATOR = "browser-operator"


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[tuple[str, str]]:
    """The live view on a free port: (base URL, operator token); the analyst token is ANALYST."""
    settings = Settings(
        analyst_token=SecretStr(ANALYST), operator_token=SecretStr(OPERATOR), web_port=free_port()
    )
    stop = run_web_in_thread(settings, stack.srv.redis_url, stack.srv.kafka)
    try:
        yield f"http://127.0.0.1:{settings.web_port}/", OPERATOR
    finally:
        stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (a launch takes seconds on a loaded machine)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium missing: run docker/install-system-deps.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def page_in(browser: Any, locale: str = "en-US", **context: Any) -> Iterator[Any]:
    """A page in a fresh context (own cookies and localStorage) whose browser asks for ``locale``
    (navigator.languages and Accept-Language). Script errors on the page fail the test."""
    ctx = browser.new_context(locale=locale, **{"viewport": {"width": 1400, "height": 900}, **context})
    errors: list[str] = []
    try:
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        assert not errors, f"script errors on the page: {errors}"
    finally:
        ctx.close()
