"""Stream processor throughput, and reading → notification latency, on the real services.

1. Throughput: a backlog of readings from 500 sensors is put on Kafka, then `pantau streams`
   runs pinned to one core (windows, rules, table and commits included), then, on the same
   backlog and core, bench/plain_faust_agent.py: a plain faust agent that only decodes each
   reading and counts it (`plain_faust_msgs_per_s`; `stream_vs_plain_faust` is the ratio). `stream_msgs_per_s`
   is the steady rate, from its first commit to the one that reaches the end of the topic;
   `stream_msgs_per_s_from_start` counts from the process start (a fresh app creates its
   topics and joins its group first), and `stream_first_commit_s` is that start-up;
   `stream_cpu_per_msg_us` is the worker's CPU time over the readings (the steadiest figure
   on a shared machine).
2. Latency: readings arrive at a nominal rate (500 sensors, one reading a minute each) and at
   ten times that, with a few sensors crossing their thresholds; `pantau streams` and
   `pantau notify` deliver to a local webhook receiver; the figures are the times from each
   triggering reading's capture to its notification being accepted by the receiver.

    python bench/streams_alerts.py [--readings 300000] [--latency-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import yaml
from kafka import KafkaProducer
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline_runs import children, cpu_seconds  # noqa: E402

from pantau import kafka  # noqa: E402
from pantau.codec import encode  # noqa: E402
from pantau.ids import stable_id  # noqa: E402
from pantau.messages import SensorReading  # noqa: E402
from pantau.settings import load_settings  # noqa: E402
from pantau.topics import Topics  # noqa: E402

BASE = REPO / "configs" / "pantau.yaml"
KINDS = [
    ("water_level", "waterLevel"),
    ("air_quality", "pm25"),
    ("waste_container", "fillingLevel"),
]


def write_config(folder: Path, sensors: int) -> Path:
    config = yaml.safe_load(BASE.read_text())
    config["sensors"] = [
        {
            "id": f"bench-{i:03d}",
            "type": KINDS[i % 3][0],
            "tps": KINDS[i % 3][0] == "waste_container",
            "location": {"lat": -7.47, "lon": 112.43, "desa": f"Desa {i % 40}"},
        }
        for i in range(sensors)
    ]
    config["cameras"] = []
    # The gateways may send for the bench's sensors (the registry refuses any other).
    for gateway in config.get("gateways") or []:
        gateway["sensors"] = [sensor["id"] for sensor in config["sensors"]]
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    # Relative paths in the base config resolve against its folder; keep them valid.
    for sub in ("mosquitto",):
        (folder / sub).mkdir(exist_ok=True)
    return path


def value_for(kind: str, i: int, crossing: bool) -> float:
    quantity = dict(KINDS)[kind]
    base = {"waterLevel": 2.0, "pm25": 30.0, "fillingLevel": 0.4}[quantity]
    high = {"waterLevel": 3.4, "pm25": 80.0, "fillingLevel": 0.95}[quantity]
    return high if crossing and i % 2 == 0 else base


def reading(sensor: int, i: int, ts: datetime, crossing: bool) -> SensorReading:
    kind, quantity = KINDS[sensor % 3]
    return SensorReading(
        id=stable_id("bench", sensor, i, ts.isoformat()),
        ts_capture=ts,
        seq=i,
        sensor_id=f"bench-{sensor:03d}",
        sensor_type=kind,
        values={quantity: value_for(kind, i, crossing)},
        ts_ingest=ts,
    )


def pantau(
    config: Path, env: dict[str, str], *args: str, cpu: str | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "pantau.cli", "--config", str(config), *args]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    return subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def backlog(config: Path, env: dict[str, str], count: int) -> None:
    """`count` readings from 500 sensors on the readings topic, each sensor one per 10 s of
    event time (windows close as it goes), a tenth of them crossing thresholds."""
    settings = load_settings(config, env)
    topics = Topics(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        linger_ms=50,
        batch_size=256_000,
        **kafka.security_options(settings.kafka, "kafka-python"),
    )
    start = datetime.now(UTC) - timedelta(days=1)
    for n in tqdm(range(count), desc="backlog", unit="msg", mininterval=2):
        sensor, i = n % 500, n // 500
        r = reading(sensor, i, start + timedelta(seconds=10 * i), crossing=sensor % 50 == 0)
        producer.send(topics.readings, key=r.key, value=encode(r))
    producer.flush()
    producer.close()


def drain(
    config: Path, env: dict[str, str], count: int, group: str, command: list[str], label: str
) -> tuple[float, float, float, float]:
    """Run `command` pinned to one core until consumer group `group` has committed the whole
    backlog: (steady readings/s, readings/s from the process start, seconds to its first
    commit, CPU µs per reading of the whole process, start-up included).

    Steady: from the first commit to the last, the readings committed in between over the
    time between; both workers commit every second, so both ends are commits.
    """
    settings = load_settings(config, env)
    topic = Topics(settings.kafka).readings
    # One client for the whole run, so the progress is read every 0.2 s (a new client per
    # reading takes about half a second) and the worker's end is seen when it happens.
    admin = kafka.admin(settings.kafka)

    def committed() -> int:
        offsets = kafka.committed_offsets(admin, group)
        return sum(m.offset for tp, m in offsets.items() if tp.topic == topic)

    began = time.monotonic()
    worker = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    first: tuple[float, int] | None = None
    try:
        with tqdm(total=count, desc=label, unit="msg", mininterval=2) as bar:
            done = 0
            while done < count:
                if worker.poll() is not None:
                    raise SystemExit(f"{label} exited with {worker.returncode}")
                time.sleep(0.2)
                now, seen = time.monotonic(), committed()
                if first is None and seen > 0:
                    first = (now, seen)
                bar.update(seen - done)
                done = seen
        if first is None or first[1] >= count:
            raise SystemExit(
                f"{label}: the first commit already covered the whole backlog: no steady rate "
                "to measure (give more --readings)"
            )
        steady = (count - first[1]) / (now - first[0])
        cpu = cpu_seconds(children(worker.pid))
        return steady, count / (now - began), first[0] - began, cpu * 1e6 / count
    finally:
        admin.close()
        worker.terminate()
        worker.wait(timeout=60)


def throughput(config: Path, env: dict[str, str], count: int) -> tuple[float, float, float, float]:
    """`pantau streams` (windows, rules, table and commits included) draining a fresh
    backlog; see `drain`."""
    backlog(config, env, count)
    command = [sys.executable, "-m", "pantau.cli", "--config", str(config), "streams"]
    group = load_settings(config, env).streams.app_id
    return drain(config, env, count, group, command, "streams")


def plain_faust(config: Path, env: dict[str, str], count: int, group: str) -> float:
    """Steady readings/s of bench/plain_faust_agent.py on the backlog `throughput` left."""
    command = [sys.executable, str(REPO / "bench" / "plain_faust_agent.py")]
    command += ["--config", str(config), "--group", group]
    return drain(config, env, count, group, command, "plain faust")[0]


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[float, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        Receiver.received.append((time.time(), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


def latency(
    config: Path, env: dict[str, str], per_s: float, seconds: float, label: str
) -> list[float]:
    settings = load_settings(config, env)
    topics = Topics(settings.kafka)
    Receiver.received = []
    workers = [pantau(config, env, "streams"), pantau(config, env, "notify")]
    try:
        time.sleep(15)  # faust joins its group and recovers its table
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            linger_ms=5,
            **kafka.security_options(settings.kafka, "kafka-python"),
        )
        started = time.monotonic()
        n = 0
        with tqdm(total=int(per_s * seconds), desc=f"latency {label}", unit="msg") as bar:
            while time.monotonic() - started < seconds:
                due = int((time.monotonic() - started) * per_s)
                while n < due:
                    sensor = n % 500
                    r = reading(sensor, n // 500, datetime.now(UTC), crossing=sensor % 25 == 0)
                    producer.send(topics.readings, key=r.key, value=encode(r))
                    n += 1
                    bar.update(1)
                time.sleep(0.01)
        producer.flush()
        producer.close()
        time.sleep(10)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    delays = []
    for at, body in Receiver.received:
        captured = datetime.fromisoformat(body["alarm"]["ts_capture"]).timestamp()
        delays.append(at - captured)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--latency-s", type=float, default=60.0)
    args = parser.parse_args()

    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    tag = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), 500)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PANTAU__")},
            "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
            "PANTAU__STREAMS__APP_ID": f"{tag}-streams",
            "PANTAU__STREAMS__DATA_DIR": str(Path(folder) / "streams"),
            "PANTAU__NOTIFY__GROUP_ID": f"{tag}-notify",
            "PANTAU__SERVICES__STATE_DIR": str(REPO / ".pantau"),
            "PANTAU__NOTIFY__ROUTES": (
                f'[{{name: bench, webhooks: ["http://127.0.0.1:{http.server_address[1]}/hook"]}}]'
            ),
            "PANTAU__STREAMS__COOLDOWN_S": "0",
        }
        settings = load_settings(config, env)
        try:
            steady, whole, startup, cpu_us = throughput(config, env, args.readings)
            print(f"figure: stream_msgs_per_s = {steady:.0f} msg/s")
            print(f"figure: stream_msgs_per_s_from_start = {whole:.0f} msg/s")
            print(f"figure: stream_first_commit_s = {startup:.1f} s")
            print(f"figure: stream_cpu_per_msg_us = {cpu_us:.1f} us")
            # The same backlog, core and machine: faust's own per-record path.
            plain = plain_faust(config, env, args.readings, f"{tag}-plain")
            print(f"figure: plain_faust_msgs_per_s = {plain:.0f} msg/s")
            print(f"figure: stream_vs_plain_faust = {steady / plain:.2f} x")
            for label, per_s in (("nominal", 500 / 60), ("10x", 10 * 500 / 60)):
                # Fresh topics: the backlog above is not part of this measurement.
                env["PANTAU__KAFKA__TOPIC_PREFIX"] = f"{tag}-{label}."
                env["PANTAU__STREAMS__APP_ID"] = f"{tag}-{label}-streams"
                env["PANTAU__NOTIFY__GROUP_ID"] = f"{tag}-{label}-notify"
                delays = latency(config, env, per_s, args.latency_s, label)
                if len(delays) < 3:
                    raise SystemExit(f"only {len(delays)} notifications arrived at {label} load")
                q = statistics.quantiles(delays, n=100)
                suffix = "" if label == "nominal" else "_10x"
                print(f"figure: notifications_{label} = {len(delays)} count")
                print(f"figure: reading_to_notification_p50_s{suffix} = {q[49]:.3f} s")
                print(f"figure: reading_to_notification_p95_s{suffix} = {q[94]:.3f} s")
                print(f"figure: reading_to_notification_p99_s{suffix} = {q[98]:.3f} s")
        finally:
            kafka.delete_topics(settings.kafka, tag)
            http.shutdown()


if __name__ == "__main__":
    main()
