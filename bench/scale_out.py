"""Scaling out on one machine: the stream processor and the sink as consumer groups of one and
of two processes, and how long the sink's group takes to carry on after losing a member.

1. Streams: a backlog of readings from 500 sensors on fresh topics, drained by a fresh faust
   app of one `pantau streams` process, then (fresh topics and app again) of two, each with
   its own local state, both members of the same app. The rate is the steady one, as in
   bench/streams_alerts.py: from the group's first commit to the commit that reaches the end
   of the backlog, the first commit counted once every member holds its partitions (so a
   member joining late is not measured as slowness of the pair). The processes are not
   pinned: the operating system spreads them over the cores.
2. Sink: a backlog of narrow readings drained into a fresh database by `pantau sink` with
   one worker process, then with two (`--workers 2`, one supervisor), each from a clean table and a fresh consumer group;
   rows stored per second as PostgreSQL's `stored_at` says (bench/sink_throughput.py).
3. Failover: two `pantau sink --no-supervise` processes in one group drain a topic that a
   producer keeps filling at a steady rate; once both hold partitions one is killed
   (SIGKILL, no goodbye to the group). `failover_s` is the time from the kill until every
   partition the killed member held has its committed offset past where it stood at the
   kill. A killed member is noticed only when its session times out (10 s, see
   pantau/kafka/consume.py), so that is the floor; the rest is the rebalance and the first
   commit of the member that took over. `failover_rows_lost` checks afterwards that every
   reading sent was stored (the sink is idempotent, so what the killed member had stored
   but not committed is skipped when read again).

The machine's cores are shared with the broker and the database, so a ratio below 2 says as
much about them as about the stage: each streams run tells (on stderr) how busy the cores
were while it was measured, and the workers' CPU time per reading.

    python bench/scale_out.py [--readings 300000] [--sink-messages 1200000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from kafka import KafkaAdminClient
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline_runs import (  # noqa: E402
    base_environ,
    bench_database,
    children,
    cpu_seconds,
    stop_on_sigterm,
)
from sink_throughput import CONFIG, publish, run_sink, send_all  # noqa: E402
from streams_alerts import reading, write_config  # noqa: E402

from pantau import kafka  # noqa: E402
from pantau.codec import encode  # noqa: E402
from pantau.runtime import die_with_parent  # noqa: E402
from pantau.settings import Settings, load_settings  # noqa: E402
from pantau.topics import Topics  # noqa: E402

SENSORS = 500
ASSIGNMENT = re.compile(r"consumer: (assigned|revoked) \d+ partitions(?:: (.*))?$")
PARTITIONS = re.compile(r"([\w.\-]+)\[([\d, ]*)\]")


def producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            **kafka.security_options(settings.kafka, "confluent"),
            "linger.ms": 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def start(config: Path, env: Mapping[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pantau.cli", "--config", str(config), *args],
            env=dict(env),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_alive(processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for process, log in zip(processes, logs, strict=True):
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{log.stem} exited with {process.returncode}:\n{tail}")


def committed(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions it never committed
    are left out)."""
    offsets = kafka.committed_offsets(admin, group)
    return {
        tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0
    }


def delete_run_topics(settings: Settings, tag: str) -> list[str]:
    """Every topic of the run: its prefixed ones, faust's (named after the app id) and faust's
    repartition topics, whose names put the agent's name first and the run's topic after."""
    admin = kafka.admin(settings.kafka)
    try:
        names = [t for t in admin.list_topics() if tag in t]
        if names:
            admin.delete_topics(names, timeout_ms=30_000)
        return names
    finally:
        admin.close()


def machine_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine so far, in clock ticks (Linux)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def stable_members(admin: KafkaAdminClient, group: str) -> int:
    """Members of a group that is not rebalancing (0 while it is)."""
    info = admin.describe_groups([group]).get(group) or {}
    if info.get("group_state") != "Stable":
        return 0
    return len(info.get("members") or [])


# -- streams ---------------------------------------------------------------------------------


class Stuck(RuntimeError):
    """The group stopped making progress (its members alive, its commits a trickle)."""


def stream_backlog(settings: Settings, topic: str, count: int) -> None:
    """As bench/streams_alerts.py: 500 sensors, one reading each per 10 s of event time (so
    windows close as it goes), a few crossing their thresholds."""
    start_at = datetime.now(UTC) - timedelta(days=1)

    def records() -> Iterator[tuple[bytes, bytes]]:
        for n in tqdm(range(count), desc="backlog", unit="msg", mininterval=2):
            sensor, i = n % SENSORS, n // SENSORS
            r = reading(sensor, i, start_at + timedelta(seconds=10 * i), crossing=sensor % 50 == 0)
            yield encode(r), r.key

    send_all(producer(settings), topic, records())


def stream_rate(
    config: Path, base: Mapping[str, str], folder: Path, run: str, count: int, workers: int
) -> float:
    """Steady readings per second of a faust app of `workers` `pantau streams` processes;
    `run` names its topics and app."""
    env = {
        **base,
        "PANTAU__KAFKA__TOPIC_PREFIX": f"{run}.",
        "PANTAU__STREAMS__APP_ID": f"{run}-streams",
        "PANTAU__SERVICES__STATE_DIR": str(REPO / ".pantau"),
    }
    settings = load_settings(config, env)
    topic = Topics(settings.kafka).readings
    kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
    stream_backlog(settings, topic, count)
    group = settings.streams.app_id
    admin = kafka.admin(settings.kafka)
    logs = [folder / f"{run}-worker{i}.log" for i in range(workers)]
    processes = []
    for i, log in enumerate(logs):
        own = {
            **env,
            # Each member keeps its own local state and status, as on separate machines.
            "PANTAU__STREAMS__DATA_DIR": str(folder / f"{run}-state{i}"),
            "PANTAU__RUNTIME__STATUS_DIR": str(folder / f"{run}-health{i}"),
        }
        processes.append(start(config, own, log, "streams"))
    first: tuple[float, int] | None = None
    began, machine = time.monotonic(), machine_jiffies()
    try:
        with tqdm(total=count, desc=f"streams x{workers}", unit="msg", mininterval=2) as bar:
            done, progress_at, mark = 0, time.monotonic(), 0
            last_commit = progress_at
            # While measuring: how long the group was rebalancing, and the longest time
            # without a commit (a member stalled or rejoining).
            unsettled, pause, polled = 0.0, 0.0, time.monotonic()
            while done < count:
                check_alive(processes, logs)
                time.sleep(0.2)
                now, seen = time.monotonic(), sum(committed(admin, group, topic).values())
                # A commit after every member holds its partitions: the steady rate's start.
                if first is None and seen > done and stable_members(admin, group) == workers:
                    first, machine = (now, seen), machine_jiffies()
                elif first is not None:
                    if stable_members(admin, group) != workers:
                        unsettled += now - polled
                    pause = max(pause, now - last_commit)
                polled = now
                if seen > done:
                    bar.update(seen - done)
                    done, last_commit = seen, now
                # A group that keeps committing a few records a second is as stuck as one
                # that stopped: a percent of the backlog in 120 s is the least that counts.
                if done - mark >= count // 100:
                    progress_at, mark = now, done
                elif now - progress_at > 120:
                    tails = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs)
                    raise Stuck(
                        f"streams x{workers}: less than 1% of the backlog committed in 120 s, "
                        f"at {done}/{count}: the group is stuck; its logs end:\n{tails}"
                    )
        if first is None or first[1] >= count:
            raise SystemExit(
                f"streams x{workers}: the backlog was done before every member held its "
                "partitions: no steady rate to measure (give more --readings)"
            )
        busy, total = (b - a for a, b in zip(machine, machine_jiffies(), strict=True))
        cpu = cpu_seconds([c for p in processes for c in children(p.pid)])
        print(
            f"streams x{workers}: steady from {first[1]} committed, {first[0] - began:.0f} s "
            f"after the start, to the end {now - first[0]:.1f} s later; the workers' CPU "
            f"{cpu * 1e6 / count:.0f} us a reading (start-up included); the machine's cores "
            f"{busy / total:.0%} busy meanwhile; the group rebalancing {unsettled:.1f} s of it, "
            f"at most {pause:.1f} s between commits",
            file=sys.stderr,
        )
        return (count - first[1]) / (now - first[0])
    finally:
        admin.close()
        stop(processes)


# -- sink failover ---------------------------------------------------------------------------


def feed(
    settings: Settings, topic: str, per_s: float, halt: threading.Event, sent: list[int]
) -> None:
    """Readings at a steady rate until `halt`; `sent[0]` counts them."""
    out = producer(settings)
    began = time.monotonic()
    n = 0
    while not halt.is_set():
        due = int((time.monotonic() - began) * per_s)
        while n < due:
            sensor = n % SENSORS
            r = reading(sensor, n // SENSORS, datetime.now(UTC), crossing=False)
            out.produce(topic, encode(r), r.key)
            n += 1
        out.poll(0)
        time.sleep(0.01)
    out.flush()
    sent[0] = n


def holding(log: Path, topic: str) -> set[int]:
    """The partitions of `topic` a sink holds now, as its log's assign/revoke lines say."""
    held: set[int] = set()
    for line in log.read_text(errors="replace").splitlines():
        match = ASSIGNMENT.search(line)
        if match is None:
            continue
        named = {
            int(p)
            for name, numbers in PARTITIONS.findall(match.group(2) or "")
            if name == topic
            for p in numbers.replace(" ", "").split(",")
            if p
        }
        held = held | named if match.group(1) == "assigned" else held - named
    return held


def failover(
    env: Mapping[str, str], conn: psycopg.Connection, folder: Path, per_s: float
) -> tuple[float, int, int]:
    """(seconds from the kill until the killed member's partitions commit again, readings
    sent, rows stored)."""
    settings = load_settings(CONFIG, env)
    topic = Topics(settings.kafka).readings
    group = settings.sink.group_id
    partitions = settings.kafka.partitions.readings
    kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
    conn.execute("TRUNCATE sensor_readings")
    halt, sent = threading.Event(), [0]
    feeder = threading.Thread(target=feed, args=(settings, topic, per_s, halt, sent), daemon=True)
    feeder.start()
    logs = [folder / f"failover-sink{i}.log" for i in range(2)]
    sinks = [start(CONFIG, env, log, "sink", "--no-supervise") for log in logs]
    admin = kafka.admin(settings.kafka)
    try:
        deadline = time.monotonic() + 120
        while True:
            check_alive(sinks, logs)
            held = [holding(log, topic) for log in logs]
            if all(held) and len(held[0] | held[1]) == partitions and not held[0] & held[1]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the two sinks did not share {topic} within 120 s: {held}")
            time.sleep(0.5)
        time.sleep(5)  # both consuming and committing at the feeder's pace
        check_alive(sinks, logs)
        victim = sorted(holding(logs[1], topic))
        if not victim:
            raise SystemExit(f"sink 1 lost its partitions of {topic} before the kill")
        print(f"killing sink 1, which holds {topic}{victim}", file=sys.stderr)
        sinks[1].kill()
        killed = time.monotonic()
        sinks[1].wait()
        # A commit the victim sent just before it died may still land; let it, so it is not
        # taken for the survivor's.
        time.sleep(0.3)
        before = committed(admin, group, topic)
        while True:
            check_alive(sinks[:1], logs[:1])
            now = committed(admin, group, topic)
            if all(now.get(p, -1) > before.get(p, -1) for p in victim):
                taken = time.monotonic() - killed
                break
            if time.monotonic() - killed > 120:
                raise SystemExit(f"{topic}{victim} not committed again within 120 s")
            time.sleep(0.1)
        print(f"sink 0 now holds {topic}{sorted(holding(logs[0], topic))}", file=sys.stderr)
        halt.set()
        feeder.join()
        if sent[0] == 0:
            raise SystemExit("the feeder sent nothing (see its traceback above)")
        deadline = time.monotonic() + 120
        while kafka.group_lag(settings.kafka, group, [topic]) > 0:
            check_alive(sinks[:1], logs[:1])
            if time.monotonic() > deadline:
                raise SystemExit("the surviving sink did not catch up within 120 s")
            time.sleep(1)
        row = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
        return taken, sent[0], int(row[0]) if row else 0
    finally:
        halt.set()
        admin.close()
        stop(sinks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Streams and sink as groups of one and of two processes; sink failover."
    )
    parser.add_argument("--readings", type=int, default=300_000, help="streams backlog")
    parser.add_argument("--sink-messages", type=int, default=1_200_000, help="sink backlog")
    parser.add_argument(
        "--failover-rate", type=float, default=2000.0, help="readings/s fed during failover"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure one and two workers this many times each, alternating; figures are "
        "the medians (the cores are shared: one round can be swayed by other work)",
    )
    args = parser.parse_args()
    stop_on_sigterm()

    tag = f"scale{uuid.uuid4().hex[:8]}"
    base = {**base_environ(), "PANTAU__LOGGING__LEVEL": "WARNING"}
    figures: list[str] = []
    stuck = ""
    try:
        with tempfile.TemporaryDirectory(prefix=f"{tag}-") as name:
            folder = Path(name)
            config = write_config(folder, SENSORS)
            streams: dict[int, list[float]] = {1: [], 2: []}
            try:
                for r in range(args.rounds):
                    for workers in (1, 2):
                        run = f"{tag}-s{workers}r{r}"
                        rate = stream_rate(config, base, folder, run, args.readings, workers)
                        streams[workers].append(rate)
            except Stuck as exc:
                # Said at the end; the sink's figures do not depend on it.
                stuck = str(exc)
                print(stuck, file=sys.stderr)
            else:
                one, two = statistics.median(streams[1]), statistics.median(streams[2])
                figures += [
                    f"stream_1_worker_msgs_per_s = {one:.0f} msg/s",
                    f"stream_2_workers_msgs_per_s = {two:.0f} msg/s",
                    f"stream_scale_ratio_2_workers = {two / one:.2f} x",
                ]

            with bench_database("pantau_scale") as dbname:
                env = {
                    **base,
                    "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}-sink.",
                    "PANTAU__POSTGRES__DBNAME": dbname,
                    "PANTAU__RUNTIME__STATUS_DIR": str(folder / "sink-health"),
                }
                settings = load_settings(CONFIG, env)
                topics = Topics(settings.kafka)
                kafka.ensure_topics(settings.kafka, topics.specs())
                publish(settings, topics.readings, args.sink_messages)
                owner = settings.postgres.connect_kwargs("owner")
                with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
                    sinks: dict[int, list[float]] = {1: [], 2: []}
                    for r in range(args.rounds):
                        for workers in (1, 2):
                            own = {**env, "PANTAU__SINK__GROUP_ID": f"{tag}-sink{workers}r{r}"}
                            label = f"sink, {workers} worker(s)"
                            rate = run_sink(own, conn, args.sink_messages, label, workers)
                            sinks[workers].append(rate)
                    one, two = statistics.median(sinks[1]), statistics.median(sinks[2])
                    figures += [
                        f"sink_1_worker_rows_per_s = {one:.0f} rows/s",
                        f"sink_2_workers_rows_per_s = {two:.0f} rows/s",
                        f"sink_scale_ratio_2_workers = {two / one:.2f} x",
                    ]
                    taken, sent, stored = failover(
                        {
                            **env,
                            "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}-failover.",
                            "PANTAU__SINK__GROUP_ID": f"{tag}-failover",
                            # The assign/revoke lines tell when both members hold partitions.
                            "PANTAU__LOGGING__LEVEL": "INFO",
                        },
                        conn,
                        folder,
                        args.failover_rate,
                    )
                    figures += [
                        f"failover_s = {taken:.1f} s",
                        f"failover_readings_sent = {sent} msg",
                        f"failover_rows_lost = {sent - stored} rows",
                    ]
    finally:
        delete_run_topics(load_settings(CONFIG, base_environ()), tag)
    for figure in figures:
        print(f"figure: {figure}")
    if stuck:
        raise SystemExit(f"no streams figures: {stuck.splitlines()[0]}")


if __name__ == "__main__":
    main()
