"""`python -m pipeline web`: serve the live view and the command API against running Kafka and Redis."""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from pipeline.apps.web.server import create_app, ensure_tokens
from pipeline.contracts.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="Kafka host:port (default: env KAFKA_BROKER)")
    p.add_argument("--redis", help="Redis URL (default: env REDIS_URL)")
    p.add_argument("--port", type=int, default=None, help="default: BUKONG_WEB_PORT or 8080")
    p.add_argument("--host", default=None, help="default: BUKONG_WEB_HOST or 127.0.0.1")


def run(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    kafka = args.broker or s.kafka_broker
    redis_url = args.redis or s.redis_url
    if not kafka or not redis_url:
        print("error: the web service joins a running stack: set KAFKA_BROKER and REDIS_URL", file=sys.stderr)
        return 2
    if not (s.analyst_token.get_secret_value() and s.operator_token.get_secret_value()):
        s = ensure_tokens(s)
        print(
            "no tokens configured (BUKONG_ANALYST_TOKEN, BUKONG_OPERATOR_TOKEN): generated for this run",
            file=sys.stderr,
        )
        print(
            f"analyst token:  {s.analyst_token.get_secret_value()}\n"
            f"operator token: {s.operator_token.get_secret_value()}",
            file=sys.stderr,
        )
    host = args.host or s.web_host
    port = args.port or s.web_port
    web.run_app(create_app(s, redis_url, kafka), host=host, port=port, access_log=None, print=None)
    return 0
