"""The supervisor's HTTP doors on a real supervised command (`pantau sink` on the real Kafka
and PostgreSQL): probes see it ready, a killed worker makes it unready with the reason and
ready again once restarted, and /metrics is closed to anyone without the token. And the
server itself, on a socket: what is not a probe is refused, and silent clients cannot hold it."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from pantau.health_http import (
    HealthSnapshot,
    MetricsAccess,
    WorkerHealth,
    serve_health,
)
from tests.integration.conftest import Pipeline
from tests.integration.console_site import free_port

TOKEN = "integration-metrics-token-0123456789"
Answer = tuple[int, str, dict[str, str]]


def fetch(port: int, path: str, *, token: str | None = None, method: str = "GET") -> Answer:
    """(status, body, headers) of one request to the health server on this machine."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def answers(port: int, path: str) -> Answer | None:
    """As `fetch`, or None while nothing listens yet."""
    try:
        return fetch(port, path)
    except (ConnectionError, http.client.RemoteDisconnected):
        return None


def worker_pid(status_dir: Path) -> int:
    """The pid of the sink's worker, from its supervisor's status file."""
    document = json.loads((status_dir / "sink.json").read_text())
    pid: int = document["workers"][0]["pid"]
    return pid


def sample(body: str, name: str, worker: str = "sink") -> str:
    prefix = f'{name}{{component="sink",worker="{worker}"}} '
    (line,) = [x for x in body.splitlines() if x.startswith(prefix)]
    return line[len(prefix) :]


def test_probes_and_metrics_follow_a_worker_that_is_killed_and_restarted(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    port = free_port()
    status_dir = tmp_path / "health"
    sink = pipeline.start(
        "sink",
        "sink",
        env={
            "PANTAU__RUNTIME__HEALTH_PORT": str(port),
            "PANTAU_METRICS_TOKEN": TOKEN,
            "PANTAU__RUNTIME__STATUS_DIR": str(status_dir),
            # Long enough that the probes below see the worker down before it is back.
            "PANTAU__RUNTIME__RESTART_INITIAL_S": "1.5",
        },
    )

    def ready() -> bool:
        reply = answers(port, "/readyz")
        return reply is not None and reply[0] == 200

    pipeline.wait_for("the sink ready on /readyz", ready, timeout=120, every=0.2)
    assert fetch(port, "/healthz")[:2] == (200, "ok\n")
    assert fetch(port, "/readyz")[:2] == (200, "ready\n")

    # /metrics: refused without the token and with a wrong one, served with it.
    for token in (None, "integration-metrics-token-0123456788", ""):
        status, body, headers = fetch(port, "/metrics", token=token)
        assert status == 401, (token, status)
        assert "pantau_worker" not in body
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, headers = fetch(port, "/metrics", token=TOKEN)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert sample(body, "pantau_worker_up") == "1"
    assert sample(body, "pantau_worker_restarts_total") == "0"
    assert float(sample(body, "pantau_worker_last_beat_age_seconds")) < 10
    assert "# TYPE pantau_worker_restarts_total counter" in body
    (started,) = [x for x in body.splitlines() if x.startswith("pantau_supervisor_start_time")]
    assert abs(float(started.split()[-1]) - time.time()) < 300

    killed = worker_pid(status_dir)
    os.kill(killed, signal.SIGKILL)
    seen: list[tuple[int, str]] = []
    liveness: set[int] = set()

    def unready_then_ready() -> bool:
        status, body, _ = fetch(port, "/readyz")
        seen.append((status, body))
        liveness.add(fetch(port, "/healthz")[0])
        return status == 200 and any(s == 503 for s, _ in seen)

    pipeline.wait_for("/readyz down and up again", unready_then_ready, timeout=120, every=0.1)
    down = [body for status, body in seen if status == 503]
    assert "worker sink restarting (killed by SIGKILL)\n" in down, seen
    assert all(body.startswith("worker sink ") and body.count("\n") == 1 for body in down)
    # The supervisor itself never stopped: liveness held throughout.
    assert liveness == {200}
    status, body, _ = fetch(port, "/metrics", token=TOKEN)
    assert status == 200
    assert sample(body, "pantau_worker_up") == "1"
    assert sample(body, "pantau_worker_restarts_total") == "1"
    assert worker_pid(status_dir) != killed

    assert pipeline.stop(sink) == 0
    # The server went with its supervisor.
    with pytest.raises(ConnectionRefusedError):
        fetch(port, "/healthz")
    log = pipeline.log_of(sink)
    assert f"sink: health and metrics on http://127.0.0.1:{port}" in log
    assert TOKEN not in log


def test_a_port_already_taken_stops_the_command_with_the_reason(pipeline: Pipeline) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = pipeline.start("sink", "sink", env={"PANTAU__RUNTIME__HEALTH_PORT": str(port)})
        assert sink.wait(timeout=60) == 1
    log = pipeline.log_of(sink)
    assert f"cannot listen on 127.0.0.1 port {port}" in log


# --------------------------------------------------------------------------- the server alone


def a_snapshot() -> HealthSnapshot:
    now = time.monotonic()
    return HealthSnapshot(
        component="sink",
        started_unix_s=time.time(),
        taken_at=now,
        running=True,
        stall_after_s=120.0,
        workers=(WorkerHealth("sink", "running", 0, started=now, last_beat=now),),
    )


def exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` as it stands and read everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the server closed with part of an overlong request unread
        return received


def test_the_server_answers_probes_and_refuses_the_rest() -> None:
    server = serve_health("sink", "127.0.0.1", 0, a_snapshot, MetricsAccess(token=TOKEN))
    port = server.address[1]
    try:
        assert fetch(port, "/healthz")[:2] == (200, "ok\n")
        status, body, headers = fetch(port, "/readyz", method="HEAD")
        assert (status, body) == (200, "")
        assert headers["Content-Length"] == str(len("ready\n"))
        assert fetch(port, "/metrics", token=TOKEN)[0] == 200
        assert fetch(port, "/nowhere")[0] == 404
        status, _, headers = fetch(port, "/healthz", method="POST")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert fetch(port, "/metrics", method="DELETE", token=TOKEN)[0] == 405
        # A request line, or a head, longer than any probe's.
        long_line = exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert long_line.startswith(b"HTTP/1.0 414 ")
        long_head = b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"b" * 9000 + b"\r\n\r\n"
        assert exchange(port, long_head).startswith(b"HTTP/1.0 431 ")
        assert exchange(port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.0 400 ")
        # The error pages name nothing and carry no HTML.
        assert b"<" not in long_line and b"Python" not in long_line
    finally:
        server.close()


@pytest.mark.parametrize(
    ("access", "warning", "status"),
    [
        (MetricsAccess(open=True), "is open to anyone who can reach it", 200),
        (MetricsAccess(), "no PANTAU_METRICS_TOKEN set: /metrics", 401),
    ],
    ids=["open", "no-token"],
)
def test_metrics_without_a_token_are_warned_about_at_start(
    access: MetricsAccess, warning: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pantau.health_http"):
        server = serve_health("sink", "127.0.0.1", 0, a_snapshot, access)
    try:
        assert warning in caplog.text
        assert fetch(server.address[1], "/metrics")[0] == status
    finally:
        server.close()


def test_silent_clients_cannot_hold_the_server() -> None:
    server = serve_health("sink", "127.0.0.1", 0, a_snapshot, MetricsAccess())
    port = server.address[1]
    silent: list[socket.socket] = []
    try:
        # As many connections as the server serves at once, each sending one byte and then
        # nothing: the next probe finds no room ...
        for _ in range(16):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"G")
            silent.append(conn)
        time.sleep(0.5)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            fetch(port, "/healthz")
        # ... until the deadline ends them (5 s after each began), without their help.
        started = time.monotonic()
        for conn in silent:
            conn.settimeout(10)
            assert conn.recv(1024) == b""
        assert time.monotonic() - started < 7
        # Each frees its place a moment after its connection closed.
        deadline = time.monotonic() + 2
        while (reply := answers(port, "/healthz")) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reply is not None and reply[:2] == (200, "ok\n")
    finally:
        for conn in silent:
            conn.close()
        server.close()
