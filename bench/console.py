"""The incident console under load: the incident list on 30 days of history, how fast a new
alarm reaches an open page, and how many requests one core serves.

Run with the services up: `python bench/console.py [--days 30 --sensors 500 --cameras 50]`.
The seeded database is the query benchmarks' (kept between runs). The console runs as one
process pinned to one core; the load comes from this process on the other cores.

Figures:
- console_list_p95_ms: GET /api/v1/alarms (a page of 50, with the filters people use), p95.
- alarm_to_page_p95_s: from the stream processor deciding an alarm state (its ts_rule) to an
  open page receiving it over the live feed, p95 (the page needs no database for it).
- alarm_stored_to_page_p95_s: the same arrival measured from the sink storing the state
  (negative: the page had it before the database did).
- console_rps: list requests per second served by the one-core console, 16 clients.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from seeded_history import CONFIG, ensure_seeded  # noqa: E402

from pantau import kafka  # noqa: E402
from pantau.ids import stable_id  # noqa: E402
from pantau.messages import Box, DumpingEvent  # noqa: E402
from pantau.settings import load_settings  # noqa: E402
from pantau.topics import Topics  # noqa: E402

PASSWORD = "bench-password-2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def pantau(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(CONFIG), *args],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and "exists already" not in done.stderr:
        raise SystemExit(f"pantau {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def start(
    env: dict[str, str], log: Path, *args: str, core: int | None = None
) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    return subprocess.Popen(
        [sys.executable, "-m", "pantau.cli", "--config", str(CONFIG), *args],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=pin,
    )


def wait_up(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the console did not come up")


def list_latency(url: str, token: str, runs: int) -> list[float]:
    queries = [
        {},
        {"state": "OPEN"},
        {"type": "dumping"},
        {"kecamatan": "Sooko"},
        {"since": (datetime.now(UTC) - timedelta(days=7)).isoformat()},
        {"state": "RESOLVED", "offset": "100"},
    ]
    times: list[float] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for q in queries:  # warm-up: pool connections, plans
            client.get("/api/v1/alarms", params=q).raise_for_status()
        for i in tqdm(range(runs), desc="list", unit="req"):
            t = time.perf_counter()
            r = client.get("/api/v1/alarms", params=queries[i % len(queries)])
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    return times


def throughput(url: str, token: str, clients: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def run(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            while time.monotonic() < stop:
                c.get("/api/v1/alarms", params={"limit": "20"}).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def live_latency(
    url: str, token: str, env: dict[str, str], events: int, owner: dict[str, object]
) -> tuple[list[float], list[float]]:
    """Dumping events for a configured camera: each makes an alarm state; an open page (an
    SSE client) notes when each arrives."""
    settings = load_settings(CONFIG, env)
    topics = Topics(settings.kafka)
    arrived: dict[str, tuple[float, float | None]] = {}
    connected = threading.Event()
    done = threading.Event()

    def page() -> None:
        try:
            read_page()
        except httpx.HTTPError:
            if not done.is_set():
                raise

    def read_page() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream(
            "GET", f"{url}/api/v1/stream", headers=headers, timeout=httpx.Timeout(30, read=60)
        ) as r:
            kind = ""
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "alarm":
                    data = json.loads(line[6:])
                    rule = data.get("ts_rule")
                    arrived[f"{data['alarm_id']}/{data['version']}"] = (
                        time.time(),
                        datetime.fromisoformat(rule).timestamp() if rule else None,
                    )
                if done.is_set():
                    return

    reader = threading.Thread(target=page, daemon=True)
    reader.start()
    if not connected.wait(30):
        raise SystemExit("the live feed did not connect")
    producer = kafka.producer(settings.kafka, "bench")
    camera = settings.cameras[0].id
    now = datetime.now(UTC)
    for i in tqdm(range(events), desc="alarms", unit="event"):
        event_id = uuid.uuid4()
        at = now + timedelta(seconds=i)
        kafka.publish(
            producer,
            topics.dumping_events,
            DumpingEvent(
                id=stable_id("bench-console", event_id),
                ts_capture=datetime.now(UTC),
                seq=i,
                event_id=event_id,
                phase="new",
                version=0,
                camera_id=camera,
                state="alerted",
                appeared_at=at - timedelta(seconds=40),
                alerted_at=at,
                box=Box(class_id=26, label="handbag", confidence=0.7, x1=10, y1=10, x2=50, y2=50),
                confidence=0.8,
            ),
        ).get(timeout=30)
        time.sleep(0.25)
    producer.close()
    time.sleep(3)
    done.set()
    from_rule: list[float] = []
    from_store: list[float] = []
    with psycopg.connect(**owner) as conn:  # type: ignore[arg-type]
        versions = conn.execute(
            "SELECT alarm_id, version, extract(epoch FROM stored_at) FROM alarm_history "
            "WHERE alarm_id IN (SELECT alarm_id FROM alerts WHERE source_id = %s)",
            (camera,),
        ).fetchall()
    stored = {f"{a}/{v}": float(s) for a, v, s in versions}
    for key, (t, rule) in arrived.items():
        if rule is not None:
            from_rule.append(t - rule)
        if key in stored:
            from_store.append(t - stored[key])
    return from_rule, from_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--database", default="pantau_bench_history")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()

    settings = ensure_seeded(
        args.database, days=args.days, sensors=args.sensors, cameras=args.cameras
    )
    owner = settings.postgres.connect_kwargs("owner")
    with psycopg.connect(**owner) as conn:  # type: ignore[arg-type]
        alarms = conn.execute("SELECT count(*) FROM alerts").fetchone()
    print(f"alerts: {alarms[0] if alarms else 0:,} alarms in the history", file=sys.stderr)

    tag = f"bench{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix=f"pantau-{tag}-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PANTAU__POSTGRES__DBNAME": args.database,
        "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
        "PANTAU__STREAMS__APP_ID": f"{tag}-streams",
        "PANTAU__STREAMS__DATA_DIR": str(work / "streams"),
        "PANTAU__SINK__GROUP_ID": f"{tag}-sink",
        "PANTAU__SINK__WORKERS": "1",
        "PANTAU__CONSOLE__PORT": str(port),
        "PANTAU__CONSOLE__PUBLIC_URL": url,
        "PANTAU__RUNTIME__SUPERVISE": "false",
    }
    pantau(env, "users", "add", "bench", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    token = pantau(env, "users", "token", "bench", "--name", "bench")
    logs = work / "logs"
    logs.mkdir()
    cores = sorted(os.sched_getaffinity(0))
    processes = [
        start(env, logs / "console.log", "console", core=cores[0]),
        start(env, logs / "streams.log", "streams"),
        start(env, logs / "sink.log", "sink"),
    ]
    try:
        wait_up(url)
        times = list_latency(url, token, args.runs)
        rps = throughput(url, token, 16, args.seconds)
        time.sleep(10)  # the stream processor joins its group
        from_rule, from_store = live_latency(url, token, env, args.events, owner)
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        kafka.delete_topics(load_settings(CONFIG, env).kafka, tag)
    print(f"figure: console_list_p95_ms = {quantile(times, 0.95) * 1000:.1f} ms")
    print(f"figure: console_list_p50_ms = {statistics.median(times) * 1000:.1f} ms")
    if from_rule:
        print(f"figure: alarm_to_page_p95_s = {quantile(from_rule, 0.95):.3f} s")
        print(f"figure: alarm_to_page_p50_s = {statistics.median(from_rule):.3f} s")
    else:
        print("no alarm reached the page: see the logs in", logs, file=sys.stderr)
    if from_store:
        print(f"figure: alarm_stored_to_page_p95_s = {quantile(from_store, 0.95):.3f} s")
    print(f"figure: console_rps = {rps:.0f} req/s")
    print(f"alarm states received: {len(from_rule)}", file=sys.stderr)


if __name__ == "__main__":
    main()
