"""The supervisor's HTTP doors: liveness, readiness and Prometheus metrics.

Every supervised command (`pantau sink`, `pantau detect`, `pantau console`, ...) serves them
on `runtime.health_host` / `runtime.health_port` when a port is set:

- `GET /healthz`: 200 `ok` while the supervisor's loop comes round, 503 otherwise. It tells
  an orchestrator whether to kill the process, and nothing else.
- `GET /readyz`: 200 when every worker is running and its loop came round within
  `runtime.stall_after_s`; 503 with one line saying which worker is not and in which state.
- `GET /metrics`: the workers' state in Prometheus text format 0.0.4, behind a bearer token
  (`PANTAU_METRICS_TOKEN`) unless `runtime.metrics_open` is set; with neither, every request
  is refused (401).

Liveness and readiness need no token: probes (kubelet, a load balancer) cannot send one, and
the answers hold only worker names and states. The decisions are plain functions of a
`HealthSnapshot` the supervisor's loop publishes each time round; the server itself is the
standard library's, on a daemon thread, kept small: one request per connection, a bounded
request head, a deadline per connection and a bounded number of connections at once.
"""

from __future__ import annotations

import hmac
import http.client
import io
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from pantau.settings import MIN_SECRET_CHARS, SettingsError

log = logging.getLogger(__name__)

METRICS_TOKEN_ENV = "PANTAU_METRICS_TOKEN"  # noqa: S105 (the variable's name, not a token)
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
_CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"

# States in which a worker does its job (as in the `up` metric on pipeline.metrics.v1).
UP_STATES = frozenset({"running", "done"})
# The loop comes round five times a second; a report to a broker that is away can hold it
# for a few seconds. Silent for this long, it is stuck: liveness fails and the process is
# replaced.
LOOP_LATE_S = 30.0

# A probe's request is one short line and a few headers; anything longer is not one.
_MAX_HEAD_BYTES = 8 * 1024
# A whole request (its head read, its answer written) must be over within this time, so a
# client that trickles bytes cannot hold a thread.
_REQUEST_DEADLINE_S = 5.0
# Requests served at once; more connections are closed unanswered until one ends.
_MAX_CONNECTIONS = 16


# --------------------------------------------------------------------------- what is served


@dataclass(frozen=True)
class WorkerHealth:
    """One worker as the supervisor's loop last saw it; times on the monotonic clock."""

    name: str
    state: str
    restarts: int
    started: float
    last_beat: float | None
    # How its last run ended ("killed by SIGKILL", "exited with code 1"), if it did.
    ended: str | None = None

    def beat_age_s(self, now: float) -> float:
        """Seconds since its loop last came round (since it started, before its first beat)."""
        return max(0.0, now - (self.last_beat if self.last_beat is not None else self.started))


@dataclass(frozen=True)
class HealthSnapshot:
    """A supervisor's state, taken by its loop (`taken_at`, monotonic clock)."""

    component: str
    started_unix_s: float
    taken_at: float
    running: bool
    stall_after_s: float
    workers: tuple[WorkerHealth, ...]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


def alive(snapshot: HealthSnapshot | None, now: float) -> bool:
    """Whether the supervisor's loop runs and came round lately."""
    return snapshot is not None and snapshot.running and now - snapshot.taken_at <= LOOP_LATE_S


def readiness(snapshot: HealthSnapshot | None, now: float) -> Readiness:
    """Ready when the loop runs and every worker is running with a recent beat; otherwise
    one line naming each worker that is not, and why."""
    if snapshot is None:
        return Readiness(False, "supervisor starting")
    if not alive(snapshot, now):
        return Readiness(False, "supervisor not running")
    problems = []
    for worker in snapshot.workers:
        if worker.state != "running":
            problems.append(f"worker {worker.name} {_state_text(worker)}")
            continue
        age_s = worker.beat_age_s(now)
        if snapshot.stall_after_s > 0 and age_s > snapshot.stall_after_s:
            problems.append(f"worker {worker.name} silent for {age_s:.0f} s")
    if problems:
        return Readiness(False, "; ".join(problems))
    return Readiness(True, "ready")


def _state_text(worker: WorkerHealth) -> str:
    # Only the state and how the last run ended: the worker's own error lines stay in the
    # log and the status file, as this answer needs no token.
    if worker.state == "restarting" and worker.ended is not None:
        return f"restarting ({worker.ended})"
    return worker.state


_METRICS = (
    ("pantau_worker_up", "gauge", "1 while the worker runs (or finished its work), else 0."),
    ("pantau_worker_restarts_total", "counter", "Times the supervisor restarted the worker."),
    (
        "pantau_worker_last_beat_age_seconds",
        "gauge",
        "Seconds since the worker's main loop last came round.",
    ),
)


def render_metrics(snapshot: HealthSnapshot, now: float) -> str:
    """The snapshot in Prometheus text format 0.0.4 (`now` on the monotonic clock)."""
    lines = []
    samples: dict[str, list[tuple[WorkerHealth, float]]] = {name: [] for name, _, _ in _METRICS}
    for worker in snapshot.workers:
        samples["pantau_worker_up"].append((worker, 1.0 if worker.state in UP_STATES else 0.0))
        samples["pantau_worker_restarts_total"].append((worker, float(worker.restarts)))
        samples["pantau_worker_last_beat_age_seconds"].append((worker, worker.beat_age_s(now)))
    component = _label_value(snapshot.component)
    for name, kind, help_text in _METRICS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for worker, value in samples[name]:
            labels = f'component="{component}",worker="{_label_value(worker.name)}"'
            lines.append(f"{name}{{{labels}}} {_number(value)}")
    name = "pantau_supervisor_start_time_seconds"
    lines.append(f"# HELP {name} Unix time the supervisor started.")
    lines.append(f"# TYPE {name} gauge")
    lines.append(f'{name}{{component="{component}"}} {_number(snapshot.started_unix_s)}')
    return "\n".join(lines) + "\n"


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# --------------------------------------------------------------------------- who may see it


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read /metrics: holders of `token`, or anyone when `open`; with neither, nobody."""

    token: str | None = field(default=None, repr=False)
    open: bool = False

    def allows(self, authorization: str | None) -> bool:
        if self.open:
            return True
        if self.token is None or authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: how much of a guess was right must not show in the answer's timing.
        return hmac.compare_digest(credentials.strip().encode(), self.token.encode())


def metrics_token(environ: Mapping[str, str]) -> str | None:
    """The /metrics token from `PANTAU_METRICS_TOKEN`: blank is none, a short one is refused."""
    token = environ.get(METRICS_TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < MIN_SECRET_CHARS:
        raise SettingsError(
            f"{METRICS_TOKEN_ENV}: a secret must have at least {MIN_SECRET_CHARS} characters "
            "(`pantau secrets init` makes strong ones)"
        )
    return token


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """What an answer depends on: the method, the path, and the Authorization header."""

    method: str
    path: str
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = _CONTENT_TYPE_TEXT
    headers: tuple[tuple[str, str], ...] = ()


_ROUTES = ("/healthz", "/readyz", "/metrics")
_ALLOW = (("Allow", "GET, HEAD"),)


def answer(
    request: Request,
    snapshot: HealthSnapshot | None,
    access: MetricsAccess,
    now: float,
) -> Reply:
    """The reply to one request; HEAD gets GET's status and headers (the server drops the body)."""
    path = urlsplit(request.path).path
    if path not in _ROUTES:
        return Reply(HTTPStatus.NOT_FOUND, "not found\n")
    if request.method not in ("GET", "HEAD"):
        return Reply(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed\n", headers=_ALLOW)
    if path == "/healthz":
        if alive(snapshot, now):
            return Reply(HTTPStatus.OK, "ok\n")
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, "not ok\n")
    if path == "/readyz":
        ready = readiness(snapshot, now)
        status = HTTPStatus.OK if ready.ready else HTTPStatus.SERVICE_UNAVAILABLE
        return Reply(status, ready.reason + "\n")
    if not access.allows(request.authorization):
        return Reply(
            HTTPStatus.UNAUTHORIZED,
            "a bearer token is needed\n",
            headers=(("WWW-Authenticate", 'Bearer realm="pantau metrics"'),),
        )
    if snapshot is None:
        return Reply(HTTPStatus.SERVICE_UNAVAILABLE, "supervisor starting\n")
    return Reply(HTTPStatus.OK, render_metrics(snapshot, now), CONTENT_TYPE_METRICS)


# --------------------------------------------------------------------------- the server


class _HeadTooLong(http.client.LineTooLong):
    pass


class _BoundedReader:
    """The connection's input, cut off after `limit` bytes or at `deadline` (monotonic):
    past either, reading raises."""

    def __init__(
        self, raw: io.BufferedIOBase, sock: socket.socket, limit: int, deadline: float
    ) -> None:
        self._raw = raw
        self._sock = sock
        self._left = limit
        self._deadline = deadline

    def readline(self, size: int = -1) -> bytes:
        cap = self._left if size < 0 else min(size, self._left)
        line = bytearray()
        # A byte at a time, each wait no longer than what is left of the deadline: a client
        # sending one byte just before each timeout gets no longer than the deadline. The
        # reads come from the file's buffer; only an empty buffer waits on the socket.
        while len(line) < cap:
            left_s = self._deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError("request not received in time")
            self._sock.settimeout(left_s)
            byte = self._raw.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        self._left -= len(line)
        if self._left <= 0 and not line.endswith(b"\n"):
            raise _HeadTooLong(f"request head over {_MAX_HEAD_BYTES} bytes")
        return bytes(line)

    def read(self, size: int = -1) -> bytes:
        return b""  # GET and HEAD carry no body; nothing else is read

    def close(self) -> None:
        self._raw.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection
    # Refusals of a request that never said its version still get a status line.
    default_request_version = "HTTP/1.0"
    timeout = _REQUEST_DEADLINE_S

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + _REQUEST_DEADLINE_S
        bounded = _BoundedReader(self.rfile, self.connection, _MAX_HEAD_BYTES, deadline)
        self.rfile = bounded  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def handle_one_request(self) -> None:
        self.command = ""
        self.request_version = "HTTP/1.0"
        self.requestline = ""
        try:
            self.raw_requestline = self.rfile.readline(_MAX_HEAD_BYTES + 1)
            if not self.raw_requestline:
                return
            # Sends 400, 431 (a head too long) or 505 itself.
            if not self.parse_request():
                return
        except _HeadTooLong:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        except OSError as exc:  # the deadline (TimeoutError), or the client went away
            log.debug("health server: request not read: %s", exc)
            return
        request = Request(self.command, self.path, self.headers.get("Authorization"))
        reply = self.server.answer_for(request)
        self.connection.settimeout(_REQUEST_DEADLINE_S)
        body = reply.body.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:
            log.debug("health server: reply not sent: %s", exc)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The standard error page is HTML naming the server; a short line says enough.
        self.close_connection = True
        body = f"{code} {HTTPStatus(code).phrase}\n".encode()
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", _CONTENT_TYPE_TEXT)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:
            log.debug("health server: error reply not sent: %s", exc)

    def version_string(self) -> str:
        return "pantau"

    def log_message(self, format: str, *args: Any) -> None:
        # Never the headers (the token); the request line and status, for debugging only.
        log.debug("health server: %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        answer_for: Callable[[Request], Reply],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.answer_for = answer_for
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up in DNS, which can hang at start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside socketserver's own except clause; one bad request is no news.
        log.debug("health server: request from %s failed: %r", client_address, sys.exception())


class HealthServer:
    """The doors of one supervisor, served on a daemon thread until `close`."""

    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], HealthSnapshot | None],
        access: MetricsAccess,
    ) -> None:
        self._snapshot = snapshot
        self._access = access
        try:
            self._server = _Server((host, port), self._answer)
        except OSError as exc:
            raise OSError(f"health server: cannot listen on {host} port {port}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="health-http",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def _answer(self, request: Request) -> Reply:
        return answer(request, self._snapshot(), self._access, time.monotonic())

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def serve_health(
    component: str,
    host: str,
    port: int,
    snapshot: Callable[[], HealthSnapshot | None],
    access: MetricsAccess,
) -> HealthServer:
    """Start serving /healthz, /readyz and /metrics; raises OSError if the port is taken."""
    if access.open:
        log.warning(
            "%s: /metrics on %s port %d is open to anyone who can reach it (runtime.metrics_open)",
            component,
            host,
            port,
        )
    elif access.token is None:
        log.warning(
            "%s: no %s set: /metrics on %s port %d refuses every request",
            component,
            METRICS_TOKEN_ENV,
            host,
            port,
        )
    server = HealthServer(host, port, snapshot, access).start()
    log.info("%s: health and metrics on http://%s:%d", component, host, server.address[1])
    return server
