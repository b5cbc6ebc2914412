"""Live mode: the simulated world played onto Kafka at a target rate, with inspection results fed back.

Simulated time is compressed by ``speed`` so the stream reaches ``rate`` events/s; every event's ``ts_ms`` is
rewritten to the wall-clock moment it is sent, so event time and wall time agree for the pipeline. Commands
read back from dispatch-commands go to the oracle; its results are produced when their (compressed) delay
has passed. Broken records can be injected (one every ``bad_every`` events) to exercise the dead-letter path.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.apps.generator import BAD_KINDS, bad_record
from pipeline.apps.sim.oracle import InspectionOracle
from pipeline.apps.sim.scenario import Scenario
from pipeline.apps.sim.world import DAY_MS, DEFAULT_START_MS, HOUR_MS, Simulator
from pipeline.contracts import events as c

GPS_LINGER_MS = 250
EVENTS_PER_TRIP = 135.0  # GPS points + logistics + declaration, on average


def natural_rate(sc: Scenario) -> float:
    """Events per simulated second of the scenario (before compression)."""
    return (sc.trips_per_day * EVENTS_PER_TRIP + sc.self_drive_per_day * 3) / 86_400


@dataclass
class LiveSim:
    kafka: str
    scenario: Scenario
    rate: float
    seed: int | None = None
    bad_events: int = 0
    bad_every: int = 50
    feedback: bool = True
    partitions: int = 4
    preroll_s: float = 5400.0  # simulated seconds sent at once at the start, so joins have history
    sent: int = 0
    bad_sent: int = 0
    results_sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    live_from_ms: int = 0  # wall time after the pre-roll burst: latency is measured from here

    def __post_init__(self) -> None:
        # start at 08:00 of the first simulated day, when the ports are busy (daytime runs ~1.4x the mean)
        self.speed = max(1.0, self.rate / (natural_rate(self.scenario) * 1.4))
        self.sim = Simulator(self.scenario, self.seed, start_ms=DEFAULT_START_MS + 7 * HOUR_MS)
        self.oracle = InspectionOracle(self.sim.truth_for, seed=self.sim.seed, time_scale=1.0 / self.speed)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- sending
    def run(self, duration_s: float | None = None) -> None:
        from kafka import KafkaProducer

        from pipeline.io.topics import MAX_RECORD_BYTES

        producer = KafkaProducer(
            bootstrap_servers=self.kafka, linger_ms=2, acks=1, max_request_size=MAX_RECORD_BYTES
        )
        # GPS points trigger no decision on their own: a gateway that sends them a few at a time (per
        # partition, every GPS_LINGER_MS) makes far fewer, larger batches, which the embedded broker, listing
        # every stored batch on each fetch, needs in long runs (docs/reliability.md)
        gps = KafkaProducer(
            bootstrap_servers=self.kafka,
            linger_ms=GPS_LINGER_MS,
            acks=1,
            batch_size=256 * 1024,
            max_request_size=MAX_RECORD_BYTES,
        )
        # simulated time start + preroll is "now"; earlier events go out at once with past timestamps
        wall0 = time.time() - self.preroll_s / self.speed
        sim0 = self.sim.start_ms
        horizon = int((duration_s or 30 * 86_400) * self.speed * 1000) if duration_s else 30 * DAY_MS
        try:
            for topic, key, ev in self.sim.events(horizon):
                if self._stop.is_set():
                    break
                if topic.startswith("bad:"):
                    continue  # live mode injects its own, by count
                due = wall0 + (ev["ts_ms"] - sim0) / 1000 / self.speed
                delay = due - time.time()
                if delay > 0:
                    if not self.live_from_ms:
                        self.live_from_ms = int(time.time() * 1000)  # the pre-roll burst is out
                    if self._stop.wait(delay):
                        break
                ev = dict(ev, ts_ms=int(due * 1000))
                (gps if topic == c.TRACKS else producer).send(topic, key=key.encode(), value=orjson.dumps(ev))
                self.sent += 1
                self.by_topic[topic] = self.by_topic.get(topic, 0) + 1
                if self.bad_sent < self.bad_events and self.sent % self.bad_every == 0:
                    t, k, raw = bad_record(
                        BAD_KINDS[self.bad_sent % len(BAD_KINDS)], self.sim.rng, ev["ts_ms"]
                    )
                    producer.send(t, key=k, value=raw)
                    self.bad_sent += 1
                self._send_due_results(producer)
        finally:
            for p in (gps, producer):
                p.flush()
                p.close()
            self._done.set()

    def _send_due_results(self, producer: Any) -> None:
        with self._lock:
            due = self.oracle.due(int(time.time() * 1000))
        for r in due:
            key = r.pop("conveyance_id", "") or r["decl_id"]
            r["ts_ms"] = int(time.time() * 1000)
            producer.send(c.INSPECTION_RESULTS, key=key.encode(), value=orjson.dumps(r))
            self.results_sent += 1

    # ------------------------------------------------------------------------------------------ feedback
    def _read_commands(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.kafka, fetch_max_wait_ms=20, enable_auto_commit=False)
        parts = consumer.partitions_for_topic(c.DISPATCH_COMMANDS) or set(range(self.partitions))
        consumer.assign([TopicPartition(c.DISPATCH_COMMANDS, p) for p in parts])
        consumer.seek_to_end()
        try:
            while not self._stop.is_set():
                for recs in consumer.poll(timeout_ms=200).values():
                    for r in recs:
                        cmd = orjson.loads(r.value)
                        with self._lock:
                            self.oracle.on_command(cmd, int(time.time() * 1000))
        finally:
            consumer.close()

    def start(self, duration_s: float | None = None) -> None:
        if self.feedback:
            t = threading.Thread(target=self._read_commands, name="sim-feedback", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self.run, args=(duration_s,), name="sim-sender", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._done.wait(30)

    def summary(self) -> dict[str, Any]:
        return {
            "events_sent": self.sent,
            "by_topic": self.by_topic,
            "bad_injected": self.bad_sent,
            "results_sent": self.results_sent,
            "speed": round(self.speed, 2),
            "typologies": self.typology_counts(),
        }

    def typology_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.sim.emitted:
            t = self.sim.truth[d]["typology"]
            out[t] = out.get(t, 0) + 1
        return out
