"""The worker's /healthz and /metrics server, and the export of rule run-time errors."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from agents.app import _export_rule_errors, start_health_server
from agents.runtime import Health
from pipeline.io.embedded import free_port
from pipeline.io.metrics import Metrics


def test_healthz_says_ok_then_degraded_while_waiting_then_ok_again() -> None:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        registry = CollectorRegistry()
        metrics = Metrics.create(registry)
        health = Health(metrics)
        port = free_port()
        runner = await start_health_server("127.0.0.1", port, registry, health)
        seen = []
        try:
            async with aiohttp.ClientSession() as http:
                for step in ("ok", "down", "up"):
                    if step == "down":
                        health.down("redis", "TimeoutError: Timeout reading from socket")
                    elif step == "up":
                        health.up("redis")
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        seen.append((resp.status, await resp.json()))
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert 'bukong_dependency_up{dependency="redis"} 1.0' in await resp.text()
        finally:
            await runner.cleanup()
        return seen

    ok, degraded, again = asyncio.run(run())
    assert ok == (200, {"status": "ok"}) and again == (200, {"status": "ok"})
    code, body = degraded
    assert code == 503 and body["status"] == "degraded" and body["waiting_for"] == ["redis"]
    assert "Timeout" in body["last_error"]["redis"] and "REDIS_URL" in body["action"]


class _Pack:
    def __init__(self, version: int) -> None:
        self.version = version
        self.counts: dict[str, int] = {}

    def errors(self) -> dict[str, int]:
        return dict(self.counts)

    def last_errors(self) -> dict[str, str]:
        return {r: "no such key: weighbridge_kg" for r in self.counts}


def test_rule_errors_exported_by_delta_and_logged_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    pack = _Pack(3)
    rt: Any = SimpleNamespace(engine=SimpleNamespace(rules=pack))
    state: dict[str, Any] = {}

    def total(rule: str) -> float:
        return registry.get_sample_value("bukong_rule_errors_total", {"rule": rule}) or 0.0

    with caplog.at_level(logging.WARNING, logger="bukong.agents"):
        pack.counts = {"r1": 4}
        _export_rule_errors(rt, metrics, state)
        pack.counts = {"r1": 10, "r2": 1}
        _export_rule_errors(rt, metrics, state)
        _export_rule_errors(rt, metrics, state)  # no change: no increment
    assert total("r1") == 10 and total("r2") == 1
    lines = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len([m for m in lines if "rule r1 " in m]) == 1  # rate-limited
    assert "no such key: weighbridge_kg" in lines[0]
    new = _Pack(4)  # a new pack counts from zero: its first errors are not lost
    new.counts = {"r1": 2}
    rt.engine.rules = new
    _export_rule_errors(rt, metrics, state)
    assert total("r1") == 12
