"""The supervisor's HTTP doors as plain decisions: what /healthz, /readyz and /metrics answer
for a given supervisor state and request (no socket is opened)."""

from __future__ import annotations

import re

import pytest

from pantau.health_http import (
    CONTENT_TYPE_METRICS,
    LOOP_LATE_S,
    HealthSnapshot,
    MetricsAccess,
    Reply,
    Request,
    WorkerHealth,
    answer,
    metrics_token,
    readiness,
    render_metrics,
)
from pantau.settings import RuntimeSettings, SettingsError

TOKEN = "m3tr1cs-t0ken-0f-the-s1te"
NOW = 1000.0
OPEN = MetricsAccess(open=True)
LOCKED = MetricsAccess(token=TOKEN)


def worker(
    name: str = "sink",
    state: str = "running",
    *,
    beat_age_s: float | None = 1.0,
    restarts: int = 0,
    ended: str | None = None,
) -> WorkerHealth:
    return WorkerHealth(
        name=name,
        state=state,
        restarts=restarts,
        started=NOW - 50.0,
        last_beat=None if beat_age_s is None else NOW - beat_age_s,
        ended=ended,
    )


def snapshot(
    *workers: WorkerHealth,
    running: bool = True,
    age_s: float = 0.1,
    stall_after_s: float = 120.0,
    component: str = "sink",
) -> HealthSnapshot:
    return HealthSnapshot(
        component=component,
        started_unix_s=1796601600.25,
        taken_at=NOW - age_s,
        running=running,
        stall_after_s=stall_after_s,
        workers=workers or (worker(),),
    )


def get(
    path: str,
    state: HealthSnapshot | None,
    access: MetricsAccess = LOCKED,
    authorization: str | None = None,
) -> Reply:
    return answer(Request("GET", path, authorization), state, access, NOW)


# --------------------------------------------------------------------------- liveness


@pytest.mark.parametrize(
    ("state", "status", "body"),
    [
        (snapshot(), 200, "ok\n"),
        # A worker down is the readiness probe's business: the supervisor itself is fine.
        (snapshot(worker(state="restarting", ended="killed by SIGKILL")), 200, "ok\n"),
        (snapshot(age_s=LOOP_LATE_S + 1), 503, "not ok\n"),
        (snapshot(running=False), 503, "not ok\n"),
        (None, 503, "not ok\n"),
    ],
    ids=["loop-running", "worker-down", "loop-stuck", "loop-ended", "not-started"],
)
def test_healthz_says_only_whether_the_supervisor_loop_runs(
    state: HealthSnapshot | None, status: int, body: str
) -> None:
    reply = get("/healthz", state, MetricsAccess())
    assert (reply.status, reply.body) == (status, body)


# --------------------------------------------------------------------------- readiness


@pytest.mark.parametrize(
    ("state", "ready", "reason"),
    [
        (snapshot(), True, "ready"),
        (snapshot(worker("sink-1"), worker("sink-2")), True, "ready"),
        (snapshot(worker(state="starting", beat_age_s=None)), False, "worker sink starting"),
        (
            snapshot(worker(state="restarting", ended="killed by SIGKILL", restarts=1)),
            False,
            "worker sink restarting (killed by SIGKILL)",
        ),
        (
            snapshot(worker("sink-1"), worker("sink-2", "restarting", ended="exited with code 1")),
            False,
            "worker sink-2 restarting (exited with code 1)",
        ),
        (snapshot(worker(state="stalled", beat_age_s=130)), False, "worker sink stalled"),
        # Silent longer than stall_after_s, before the supervisor has acted on it.
        (snapshot(worker(beat_age_s=125.4)), False, "worker sink silent for 125 s"),
        (snapshot(worker(beat_age_s=125.4), stall_after_s=0), True, "ready"),
        (snapshot(worker(state="done")), False, "worker sink done"),
        (
            snapshot(worker("a", "stopping"), worker("b", "stopped")),
            False,
            "worker a stopping; worker b stopped",
        ),
        (snapshot(running=False), False, "supervisor not running"),
        (snapshot(age_s=LOOP_LATE_S + 1), False, "supervisor not running"),
        (None, False, "supervisor starting"),
    ],
)
def test_readiness_names_each_worker_that_is_not_running(
    state: HealthSnapshot | None, ready: bool, reason: str
) -> None:
    decision = readiness(state, NOW)
    assert (decision.ready, decision.reason) == (ready, reason)
    reply = get("/readyz", state, MetricsAccess())
    assert reply.status == (200 if ready else 503)
    assert reply.body == reason + "\n"


def test_readiness_never_shows_what_a_worker_logged() -> None:
    # The reply needs no token: it holds the state and how the last run ended, nothing more.
    state = snapshot(worker(state="restarting", ended="exited with code 1"))
    reply = get("/readyz", state, MetricsAccess())
    assert reply.body.count("\n") == 1
    assert reply.body == "worker sink restarting (exited with code 1)\n"


# --------------------------------------------------------------------------- metrics text


def test_metrics_text_has_every_series_with_help_type_and_labels() -> None:
    state = snapshot(
        worker("sink-1", beat_age_s=2.5),
        worker("sink-2", "restarting", beat_age_s=40.0, restarts=3, ended="killed by SIGKILL"),
    )
    text = render_metrics(state, NOW)
    assert text.endswith("\n")
    assert text.splitlines() == [
        "# HELP pantau_worker_up 1 while the worker runs (or finished its work), else 0.",
        "# TYPE pantau_worker_up gauge",
        'pantau_worker_up{component="sink",worker="sink-1"} 1',
        'pantau_worker_up{component="sink",worker="sink-2"} 0',
        "# HELP pantau_worker_restarts_total Times the supervisor restarted the worker.",
        "# TYPE pantau_worker_restarts_total counter",
        'pantau_worker_restarts_total{component="sink",worker="sink-1"} 0',
        'pantau_worker_restarts_total{component="sink",worker="sink-2"} 3',
        "# HELP pantau_worker_last_beat_age_seconds "
        "Seconds since the worker's main loop last came round.",
        "# TYPE pantau_worker_last_beat_age_seconds gauge",
        'pantau_worker_last_beat_age_seconds{component="sink",worker="sink-1"} 2.5',
        'pantau_worker_last_beat_age_seconds{component="sink",worker="sink-2"} 40',
        "# HELP pantau_supervisor_start_time_seconds Unix time the supervisor started.",
        "# TYPE pantau_supervisor_start_time_seconds gauge",
        'pantau_supervisor_start_time_seconds{component="sink"} 1796601600.25',
    ]


@pytest.mark.parametrize(
    ("state", "age"),
    [
        # Before its first beat: since the worker started.
        ("starting", None),
        ("running", 7.0),
    ],
)
def test_beat_age_counts_from_the_start_before_the_first_beat(
    state: str, age: float | None
) -> None:
    text = render_metrics(snapshot(worker(state=state, beat_age_s=age)), NOW)
    (line,) = [x for x in text.splitlines() if x.startswith("pantau_worker_last_beat_age")]
    assert line.endswith(" 50" if age is None else " 7")


def test_label_values_are_escaped_so_a_name_cannot_forge_a_series() -> None:
    text = render_metrics(snapshot(worker('a"b\\c\nd'), component="x"), NOW)
    assert 'worker="a\\"b\\\\c\\nd"' in text
    # Every line is a comment or exactly one sample: name{labels} value.
    sample = re.compile(r'^[a-z_]+\{(?:[a-z_]+="(?:[^"\\\n]|\\.)*",?)+\} [0-9.e+-]+$')
    for line in text.splitlines():
        assert line.startswith("# ") or sample.match(line), line


def test_metrics_reply_is_prometheus_text() -> None:
    reply = get("/metrics", snapshot(), authorization=f"Bearer {TOKEN}")
    assert reply.status == 200
    assert reply.content_type == CONTENT_TYPE_METRICS == "text/plain; version=0.0.4; charset=utf-8"
    assert 'pantau_worker_up{component="sink",worker="sink"} 1\n' in reply.body


# --------------------------------------------------------------------------- who may read


@pytest.mark.parametrize(
    ("access", "authorization", "status"),
    [
        (LOCKED, f"Bearer {TOKEN}", 200),
        (LOCKED, f"bearer {TOKEN}", 200),
        (LOCKED, f"Bearer  {TOKEN} ", 200),
        (LOCKED, None, 401),
        (LOCKED, "Bearer", 401),
        (LOCKED, "Bearer ", 401),
        (LOCKED, f"Bearer {TOKEN[:-1]}", 401),
        (LOCKED, f"Bearer {TOKEN}x", 401),
        (LOCKED, f"Basic {TOKEN}", 401),
        (LOCKED, TOKEN, 401),
        (LOCKED, "Bearer ünïcödé", 401),
        # No token configured and not open: closed to everyone, whatever they send.
        (MetricsAccess(), None, 401),
        (MetricsAccess(), "Bearer ", 401),
        (MetricsAccess(), "Bearer None", 401),
        (OPEN, None, 200),
        (MetricsAccess(token=TOKEN, open=True), "Bearer wrong", 200),
    ],
)
def test_metrics_need_the_token_unless_open(
    access: MetricsAccess, authorization: str | None, status: int
) -> None:
    reply = answer(Request("GET", "/metrics", authorization), snapshot(), access, NOW)
    assert reply.status == status
    if status == 401:
        assert "pantau_worker" not in reply.body
        assert ("WWW-Authenticate", 'Bearer realm="pantau metrics"') in reply.headers


def test_the_token_never_shows_in_a_repr() -> None:
    assert TOKEN not in repr(LOCKED)
    assert TOKEN not in repr(Request("GET", "/metrics", f"Bearer {TOKEN}"))


@pytest.mark.parametrize(
    ("environ", "token"),
    [
        ({}, None),
        ({"PANTAU_METRICS_TOKEN": ""}, None),
        ({"PANTAU_METRICS_TOKEN": "   "}, None),
        ({"PANTAU_METRICS_TOKEN": TOKEN}, TOKEN),
        ({"PANTAU_METRICS_TOKEN": f" {TOKEN}\n"}, TOKEN),
    ],
)
def test_the_token_comes_from_the_environment(environ: dict[str, str], token: str | None) -> None:
    assert metrics_token(environ) == token


def test_a_short_token_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError, match="at least 16 characters") as caught:
        metrics_token({"PANTAU_METRICS_TOKEN": "short-secret"})
    assert "short-secret" not in str(caught.value)


# --------------------------------------------------------------------------- routes, methods


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/healthz?probe=kubelet", 200),
        ("HEAD", "/readyz", 200),
        ("HEAD", "/metrics", 200),
        ("GET", "/", 404),
        ("GET", "/metrics/", 404),
        ("GET", "/healthz/../metrics", 404),
        ("POST", "/nowhere", 404),
        ("POST", "/healthz", 405),
        ("PUT", "/metrics", 405),
        ("DELETE", "/readyz", 405),
        ("OPTIONS", "/healthz", 405),
    ],
)
def test_only_get_and_head_on_the_three_paths(method: str, path: str, status: int) -> None:
    reply = answer(Request(method, path, f"Bearer {TOKEN}"), snapshot(), LOCKED, NOW)
    assert reply.status == status
    if status == 405:
        assert ("Allow", "GET, HEAD") in reply.headers


def test_metrics_before_the_loop_started_say_so_behind_the_token() -> None:
    assert get("/metrics", None).status == 401
    reply = get("/metrics", None, authorization=f"Bearer {TOKEN}")
    assert (reply.status, reply.body) == (503, "supervisor starting\n")


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("values", "port"),
    [
        ({}, None),
        ({"health_port": 9464}, 9464),
        ({"health_port": "9464"}, 9464),
        ({"health_port": ""}, None),
        ({"health_port": None}, None),
    ],
)
def test_health_port_is_off_unless_set(values: dict[str, object], port: int | None) -> None:
    runtime = RuntimeSettings.model_validate(values)
    assert runtime.health_port == port
    assert runtime.health_host == "127.0.0.1"
    assert runtime.metrics_open is False


@pytest.mark.parametrize("port", [0, -1, 65536, "http"])
def test_health_port_outside_the_range_is_refused(port: object) -> None:
    with pytest.raises(ValueError, match="health_port"):
        RuntimeSettings.model_validate({"health_port": port})
