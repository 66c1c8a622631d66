"""`pantau demo`, the README's first command, end to end on the real services."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import psycopg

from pantau.settings import load_settings
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, base_environ

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def figure(text: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}\s+(\d+)", text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return int(match.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_console(pid_file: Path) -> None:
    """The console `--keep-console` leaves running: stopped as the summary says."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def log_in_and_open(base: str, user: str, password: str, page: str) -> tuple[int, str]:
    """A person's way in: the login form (with its CSRF token), then the page."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{base}/login", timeout=10) as answer:
        form = answer.read().decode()
    csrf = re.search(r'name="csrf" value="([^"]*)"', form)
    assert csrf, form
    body = urllib.parse.urlencode(
        {"username": user, "password": password, "csrf": csrf.group(1), "next": page}
    ).encode()
    # The login answers 303 to `next`, which the opener follows with the session cookie.
    with opener.open(f"{base}/login", data=body, timeout=10) as answer:
        return answer.status, answer.read().decode()


def test_demo_runs_the_whole_pipeline_opens_a_dumping_alarm_and_leaves_the_console(
    tmp_path: Path, shared_data: Path
) -> None:
    out = tmp_path / "demo"
    # A console of its own, beside any a developer's demo left running on the default port.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **base_environ(),
        "PANTAU__CONSOLE__PORT": str(port),
        "PANTAU__CONSOLE__PUBLIC_URL": base,
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pantau.cli", "demo", "--duration", "25", "--out", str(out),
             "--keep-console"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        summary = result.stdout
        frames = figure(summary, "frames in (published by the cameras)")
        # 25 s of two cameras at 5 frames/s while people move, a frame a second when the
        # motion gate sees a still scene.
        assert frames >= 50
        # Every frame detected, or let go because the detector fell behind (a busy machine).
        skipped = figure(summary, "frames skipped (too old to detect)")
        assert figure(summary, "frames detected") + skipped == frames
        assert skipped <= frames // 10
        assert figure(summary, "sensor readings accepted") > 50
        assert figure(summary, "dead letters") >= 1
        assert re.search(r"^\s+person\s+\d+", summary, re.MULTILINE), summary
        assert re.search(r"^\s+sensor_readings\s+[1-9]\d* /", summary, re.MULTILINE), summary
        image = cv2.imread(str(out / "annotated-frame.png"))
        assert image is not None
        assert image.shape[1] == 640

        # The bag left on the demo camera's pavement: one alarm, its page, its notifications.
        # The sample clip's camera watches with the default 30 s dwell: no alarm of its own here.
        assert figure(summary, "dumping alarms opened") == 1
        sent = figure(summary, "notifications sent for them")
        assert sent >= 1
        page_url = rf"{re.escape(base)}/incidents/({UUID})"
        line = re.search(rf"^\s+OPEN .*demo-dumping .*opened .* {page_url}$", summary, re.MULTILINE)
        assert line, summary
        alarm_id = line.group(1)

        settings = load_settings(BASE_CONFIG, env)
        with psycopg.connect(**settings.postgres.connect_kwargs("owner")) as conn:  # type: ignore[arg-type]
            alarm = conn.execute(
                "SELECT source_kind, source_id, state, event_id FROM alerts WHERE alarm_id = %s",
                (alarm_id,),
            ).fetchone()
            assert alarm is not None and alarm[:3] == ("dumping", "demo-dumping", "OPEN")
            event = conn.execute(
                "SELECT camera_id, zone_id, alerted_at IS NOT NULL FROM dumping_events "
                "WHERE event_id = %s",
                (alarm[3],),
            ).fetchone()
            assert event == ("demo-dumping", "trotoar", True)
            outbox = conn.execute(
                "SELECT count(*) FROM notification_outbox WHERE alarm_id = %s AND status = 'sent'",
                (alarm_id,),
            ).fetchone()
            assert outbox is not None and outbox[0] == sent

        # What left the notifier arrived, with the console page as its link.
        received = [
            json.loads(path.read_text()) for path in sorted((out / "notifications").glob("*.json"))
        ]
        about = [r for r in received if r["alarm"]["alarm_id"] == alarm_id]
        assert len(about) == sent
        assert {r["link"] for r in about} == {f"{base}/incidents/{alarm_id}"}
        assert all(r["alarm"]["place"]["desa"] == "Sooko" for r in about)

        # The console outlives the demo: the printed login opens the alarm's page.
        login = re.search(r"log in as (\S+) \(operator\), password: (\S+)$", summary, re.MULTILINE)
        assert login, summary
        assert f"kill $(cat {out / 'console.pid'})" in summary
        status, page = log_in_and_open(base, *login.groups(), f"/incidents/{alarm_id}")
        assert status == 200
        assert "demo-dumping" in page
    finally:
        stop_console(out / "console.pid")
