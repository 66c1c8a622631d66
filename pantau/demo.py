"""`pantau demo`: the whole pipeline for about a minute, on this machine, then a summary.

Starts the development services, applies the schema, then runs every stage as its own
`pantau` process — exactly as a deployment runs them — with two cameras and simulated
sensors over MQTT (a few payloads deliberately malformed). The first camera plays the shared
sample clip (people at a table). The second, `demo-dumping`, plays a synthetic street scene
rendered at start: someone puts a bag down on the pavement and walks off. Its watch zone has
a short dwell, so within the demo the detector raises a dumping event, the stream processor
opens an alarm, and the notifier sends its notification. The notifications go to a webhook
the demo itself listens on, standing in for the Telegram chats and mailboxes of the
configured routes; each one is kept as JSON in the output folder. The incident console runs
beside them.

When the sources stop, the demo waits for the detector, the sink, the stream processor and
the notifier to catch up, stops them, and reports what went in, what was stored, and each
dumping alarm with its page in the console and the notifications sent for it. One annotated
frame per camera is written as a PNG. With --keep-console the console keeps running
afterwards, and the demo operator `demo` gets a fresh password to log in with.

The demo camera is added for the demo's own processes only (PANTAU__CAMERAS): the config
file stays as it is, and the other commands never see the camera.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import yaml
from tqdm import tqdm

from pantau import kafka, services
from pantau.commands import Context, SubParsers
from pantau.ids import utcnow
from pantau.messages import SETTLEABLE_STATES
from pantau.settings import Settings
from pantau.topics import Topics

_DRAIN_TIMEOUT_S = 180.0
# From the last dumping event stored to its alarm stored and its notifications sent.
_ALARM_TIMEOUT_S = 90.0
_START_TIMEOUT_S = 120.0

DUMPING_CAMERA = "demo-dumping"
# Short, so that the alarm opens within the demo's minute; a real street waits 30 s or more.
DUMPING_DWELL_S = 8.0

# Frames this old are still detected in the demo (a live camera's detector skips them after
# detect.max_frame_age_s, 3 s by default).
DEMO_MAX_FRAME_AGE_S = 20.0

_SCENE_NAME = "drop-and-leave"
# The camera process takes a few seconds to start playing the scene; the still scene is then
# sampled once per motion.static_interval_s, so the alarm's frame comes up to that long after
# the dwell.
_ALARM_MARGIN_S = 5.0

DEMO_USER = "demo"
CONSOLE_PID_FILE = "console.pid"


def scene_variant(earlier_events: int) -> tuple[float, float]:
    """(seconds before the owner walks in, where the bag goes down as a fraction of the width)
    for a run after `earlier_events` dumping events of the demo camera.

    A camera playing a file dates events on the file's clock, and the detector names an event
    after its camera, time and box, so that replayed frames make the same event. Each run
    therefore plays the scene a little differently, and its bag is a new event with a new
    alarm; 310 runs pass before a placement comes round again. The bag stays clear of the
    pole and the bin, and goes down 4.5 to 7.5 s into the scene.
    """
    enter_s = 1.0 + (earlier_events % 10) * 0.2
    drop_x = 0.30 + (earlier_events // 10 % 31) * 0.005
    return round(enter_s, 3), round(drop_x, 4)


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline for a minute and summarise it")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of camera and sensors"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <state dir>/demo)")
    parser.add_argument(
        "--malformed-every",
        type=int,
        default=40,
        metavar="N",
        help="every Nth sensor payload is bad",
    )
    parser.add_argument(
        "--keep-console",
        action="store_true",
        help="leave the incident console running afterwards and print how to log in "
        f"(as the operator {DEMO_USER!r}, whose password is reset)",
    )
    parser.set_defaults(handler=_handle)


def dumping_camera(clip: Path) -> dict[str, Any]:
    """The demo's second camera, in the settings' shape: the rendered scene, in desa Sooko,
    with the pavement watched and the street furniture as fixtures (the scene's geometry)."""
    return {
        "id": DUMPING_CAMERA,
        "name": "Demo — trotoar (adegan sintetis: kantong ditinggal)",
        "url": str(clip),
        "fps": 5,
        "max_width": 640,
        "location": {"lat": -7.4935, "lon": 112.4310, "desa": "Sooko", "kecamatan": "Sooko"},
        "zones": [
            {"id": "trotoar", "kind": "watch", "dwell_s": DUMPING_DWELL_S,
             "polygon": [[0.0, 0.46], [1.0, 0.46], [1.0, 1.0], [0.0, 1.0]]},
            {"id": "tiang", "kind": "fixture",
             "polygon": [[0.1, 0.75], [0.155, 0.75], [0.155, 0.87], [0.1, 0.87]]},
            {"id": "tong-sampah", "kind": "fixture",
             "polygon": [[0.78, 0.76], [0.9, 0.76], [0.9, 0.88], [0.78, 0.88]]},
        ],
    }  # fmt: skip


def cameras_with_demo(settings: Settings, clip: Path) -> str:
    """The configured cameras and the demo's, as the value of PANTAU__CAMERAS."""
    cameras = [
        {**camera.model_dump(mode="json", exclude_unset=True), "url": camera.url.get_secret_value()}
        for camera in settings.cameras
        if camera.id != DUMPING_CAMERA
    ]
    return json.dumps([*cameras, dumping_camera(clip)])


def routes_to_inbox(settings: Settings, inbox_url: str) -> str:
    """The configured routes with their recipients replaced by the demo's webhook (one path
    per route), as the value of PANTAU__NOTIFY__ROUTES: who hears of what stays as set."""
    routes = [
        {
            **route.model_dump(mode="json", exclude_unset=True),
            "telegram_chat_ids": [],
            "emails": [],
            "webhooks": [f"{inbox_url}/{quote(route.name, safe='')}"],
        }
        for route in settings.notify.routes
    ]
    if not routes:
        routes = [{"name": "demo", "webhooks": [f"{inbox_url}/demo"]}]
    return json.dumps(routes)


@dataclass
class Stage:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 15) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Received:
    """One notification as it arrived at the demo's webhook."""

    route: str
    alarm_id: str
    alarm_type: str
    source_id: str
    change: str
    subject: str
    path: Path


class Inbox:
    """The demo's stand-in for the people who get notifications: a webhook on this machine
    that answers like a receiver that took the message, and keeps each one as JSON. A
    retried delivery (same Idempotency-Key) is kept once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._received: dict[str, Received] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Listen on a free loopback port; returns the base URL."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "expected a JSON body")
                    return
                if not isinstance(payload, dict):
                    self.send_error(400, "expected a JSON object")
                    return
                key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
                inbox.keep(key, unquote(self.path.strip("/")), payload)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # Every delivery is kept as a file; a line per request would only add noise.
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, name="demo-inbox", daemon=True)
        thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keep(self, key: str, route: str, payload: dict[str, Any]) -> None:
        alarm = payload.get("alarm")
        if not isinstance(alarm, dict):
            alarm = {}
        with self._lock:
            if key in self._received:
                return
            alarm_type = str(alarm.get("alarm_type", "unknown"))
            source_id = str(alarm.get("source_id", "unknown"))
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{alarm_type}-{source_id}")
            path = self.folder / f"{len(self._received) + 1:03d}-{stem}.json"
            path.write_text(
                json.dumps({"route": route, **payload}, ensure_ascii=False, indent=2) + "\n",
                encoding="utf-8",
            )
            self._received[key] = Received(
                route=route,
                alarm_id=str(alarm.get("alarm_id", "")),
                alarm_type=alarm_type,
                source_id=source_id,
                change=str(alarm.get("change", "")),
                subject=str(payload.get("subject", "")),
                path=path,
            )

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received.values())


@dataclass
class DumpingAlarm:
    alarm_id: UUID
    source_id: str
    state: str
    severity: str
    opened_at: datetime
    event_id: UUID | None
    sent: int = 0
    pending: int = 0
    failed: int = 0
    routes: list[str] = field(default_factory=list)


class Demo:
    def __init__(
        self,
        ctx: Context,
        settings: Settings,
        out: Path,
        duration: float,
        *,
        keep_console: bool = False,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.out = out
        self.duration = duration
        self.keep_console = keep_console
        self.topics = Topics(settings.kafka)
        self.stages: dict[str, Stage] = {}
        self.inbox = Inbox(out / "notifications")
        self.env: dict[str, str] = dict(ctx.environ)
        self.since = utcnow()

    # ------------------------------------------------------------------ processes

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pantau.cli", "--config", str(self.ctx.config_path), *args]

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Stage:
        log_path = self.out / "logs" / f"{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )
        stage = Stage(name, process, log_path, log_file)
        self.stages[name] = stage
        return stage

    def run_command(self, what: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
        )
        if result.returncode != 0:
            raise DemoError(f"{what} failed (exit code {result.returncode}):\n{result.stderr}")
        return result

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.stages):
            stage = self.stages[name]
            code = stage.process.poll()
            if code is not None and code != 0:
                raise DemoError(f"{name} exited with code {code}:\n{stage.tail()}")

    def stop(self, name: str, timeout: float = 60.0) -> int:
        stage = self.stages[name]
        if stage.process.poll() is None:
            stage.process.send_signal(signal.SIGTERM)
        try:
            code = stage.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stage.process.kill()
            code = stage.process.wait()
        stage.log_file.close()
        return code

    def stop_all(self) -> None:
        for name in reversed(list(self.stages)):
            if not self.stages[name].log_file.closed:
                self.stop(name, timeout=20)
        self.inbox.stop()

    def detach(self, name: str) -> Stage:
        """Leave a stage running after the demo: it is no longer stopped with the others."""
        stage = self.stages.pop(name)
        stage.log_file.close()
        return stage

    def _forget_detector_states(self) -> None:
        """The demo plays its clips from the start: a detector state an earlier demo left on
        this broker (an object followed, even alerted, at the clip's end) is not taken up.
        A tombstone per camera deletes it from the compacted state topic."""
        kafka.ensure_topics(self.settings.kafka, self.topics.specs())
        client = kafka.producer(self.settings.kafka, "demo")
        try:
            cameras = json.loads(self.env["PANTAU__CAMERAS"])
            for camera in cameras:
                client.send(self.topics.detect_state, key=str(camera["id"]).encode(), value=None)
            client.flush(timeout=30)
        finally:
            client.close(timeout=5)

    # ------------------------------------------------------------------ counts

    def counted_topics(self) -> dict[str, str]:
        t = self.topics
        names = {
            "frames": t.frames,
            "detections": t.detections,
            "readings": t.readings,
            "heartbeats": t.camera_health,
            "dumping events": t.dumping_events,
        }
        for topic in t.data_topics():
            names[f"dead letters ({topic})"] = t.dead_letters(topic)
        return names

    def counts(self) -> dict[str, int]:
        names = self.counted_topics()
        raw = kafka.message_counts(self.settings.kafka, names.values())
        return {label: raw[topic] for label, topic in names.items()}

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.settings.postgres.connect_kwargs("owner"), autocommit=True)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ run

    def run(self, malformed_every: int) -> dict[str, Any]:
        print("pantau demo: starting services (the first run installs them)", flush=True)
        services.up(self.settings)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        self._stop_previous_console()
        scene_dir = self.out / "scene"
        self.env["PANTAU__CAMERAS"] = cameras_with_demo(
            self.settings, scene_dir / f"{_SCENE_NAME}.mp4"
        )
        # The registry learns the demo camera (its place shows on the wall and the console).
        print(self.run_command("migrate", "migrate").stdout.strip(), flush=True)
        self._forget_detector_states()
        scene = self._render_scene(scene_dir)

        snapshots = self.out / "snapshots"
        shutil.rmtree(snapshots, ignore_errors=True)
        self.since = utcnow()
        before = self.counts()
        inbox_url = self.inbox.start()
        console = self.settings.console
        if _port_in_use(console.host, console.port):
            raise DemoError(
                f"port {console.port} of {console.host} is taken, so the incident console "
                "cannot start there; stop what listens on it, or choose another port with "
                "PANTAU__CONSOLE__PORT (and PANTAU__CONSOLE__PUBLIC_URL)"
            )

        print(
            "starting sink, detector, sensor ingest, stream processor, notifier and incident "
            "console; loading the model…",
            flush=True,
        )
        self.start("sink", "sink")
        # Every frame of the short clips counts: on a small machine the detector may fall a
        # few seconds behind them, and the demo waits for it rather than skipping frames.
        self.start(
            "detect", "detect", "--snapshot-dir", str(snapshots),
            env={"PANTAU__DETECT__MAX_FRAME_AGE_S": str(DEMO_MAX_FRAME_AGE_S)},
        )  # fmt: skip
        self.start("ingest-sensors", "ingest", "sensors")
        self.start("streams", "streams")
        notify_env = {
            "PANTAU__NOTIFY__ROUTES": routes_to_inbox(self.settings, inbox_url),
            "PANTAU__NOTIFY__INCIDENT_URL": console.incident_url("{alarm_id}"),
        }
        self.start("notify", "notify", env=notify_env)
        self.start("console", "console")
        self._wait_until_ready()
        print(f"incident console: {console.public_url.rstrip('/')}/incidents", flush=True)
        self.start("ingest-camera", "ingest", "camera", "--duration", str(self.duration))
        self.start(
            "simulate-sensors",
            "simulate",
            "sensors",
            "--duration",
            str(self.duration),
            "--malformed-every",
            str(malformed_every),
        )
        started = time.monotonic()
        self._progress(before)
        for name in ("ingest-camera", "simulate-sensors"):
            code = self.stop(name, timeout=self.duration + 60)
            if code != 0:
                raise DemoError(f"{name} exited with code {code}:\n{self.stages[name].tail()}")
        sources_done = time.monotonic()
        self._drain()
        alarms = self._wait_for_alarms()
        drained = time.monotonic()
        for name in ("ingest-sensors", "detect", "streams", "notify", "sink"):
            self.stop(name)
        after = self.counts()

        stats = self.run_command(
            "db stats", "db", "stats", "--since", self.since.isoformat(), "--json"
        )
        login = self._keep_console() if self.keep_console else None
        delta = {k: after[k] - before.get(k, 0) for k in after}
        return {
            "kafka": delta,
            "db": json.loads(stats.stdout),
            "camera_s": sources_done - started,
            "pipeline_s": drained - started,
            "drain_s": drained - sources_done,
            "annotated": self._annotated_frames(snapshots),
            "detector_line": self._last_lines("detect", "detector:")[-1:],
            "skipped": self._frames_skipped(),
            "camera_lines": self._last_lines("ingest-camera", "camera "),
            "logs": self.out / "logs",
            "scene": scene,
            "alarms": alarms,
            "inbox": self.inbox.received(),
            "inbox_dir": self.inbox.folder,
            "console": login,
            "incident_url": console.incident_url,
            "timezone": self.settings.timezone,
            "since": self.since,
        }

    def _render_scene(self, folder: Path) -> dict[str, Any]:
        """The dumping camera's clip, a little longer than the cameras run."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(DISTINCT event_id) FROM dumping_events WHERE camera_id = %s",
                (DUMPING_CAMERA,),
            ).fetchone()
        enter_s, drop_x = scene_variant(int(row[0]) if row else 0)
        result = subprocess.run(
            [
                sys.executable, "-m", "detectors.evaluation.synthetic", str(folder),
                "--name", _SCENE_NAME, "--scenario", "drop_and_leave",
                "--enter-s", str(enter_s), "--drop-x", str(drop_x),
                "--duration", f"{self.duration + 5:g}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
        )  # fmt: skip
        if result.returncode != 0:
            raise DemoError(f"rendering the dumping scene failed:\n{result.stderr}")
        truth = yaml.safe_load((folder / f"{_SCENE_NAME}.yaml").read_text(encoding="utf-8"))
        left = float(truth["owner_left_at"])
        due = left + DUMPING_DWELL_S
        print(
            f"dumping scene: a bag is put down {truth['drop_at']:.1f} s into it and left from "
            f"{left:.1f} s; its alarm is due {DUMPING_DWELL_S:g} s later, at {due:.1f} s",
            flush=True,
        )
        if self.duration < due + _ALARM_MARGIN_S:
            print(
                f"note: with --duration {self.duration:g} the cameras stop before that; "
                f"no dumping alarm is expected (give at least {due + _ALARM_MARGIN_S:.0f})",
                flush=True,
            )
        return {
            "video": folder / f"{_SCENE_NAME}.mp4",
            "drop_at": float(truth["drop_at"]),
            "left_at": left,
            "due_at": due,
            "too_short": self.duration < due + _ALARM_MARGIN_S,
        }

    def _wait_until_ready(self) -> None:
        # The model loads in a few seconds; frames published meanwhile would queue up anyway,
        # but starting the cameras after makes the frame rate figures honest. An alarm of an
        # earlier demo still open on the demo camera would take the new event in quietly (no
        # notification): it is resolved first, through the stream processor like any action.
        waits = ["detector", "stream processor", "incident console", "earlier alarms"]
        bar = tqdm(total=len(waits), desc="starting", unit="stage", file=sys.stdout)
        bar.set_postfix_str("waiting for " + ", ".join(waits))
        deadline = time.monotonic() + _START_TIMEOUT_S
        settling: list[UUID] | None = None
        while waits:
            if time.monotonic() > deadline:
                bar.close()
                raise DemoError(
                    f"not ready within {_START_TIMEOUT_S:.0f} s: {', '.join(waits)}"
                    + "".join(
                        f"\n--- {name}:\n{self.stages[name].tail()}"
                        for name, what in (
                            ("detect", "detector"),
                            ("streams", "stream processor"),
                            ("console", "incident console"),
                        )
                        if what in waits
                    )
                )
            self.check_alive()
            done = []
            if "detector" in waits and "ready in" in self._log("detect"):
                done.append("detector")
            streams_ready = "Worker ready" in self._log("streams")
            if "stream processor" in waits and streams_ready:
                done.append("stream processor")
            if "incident console" in waits and self._console_healthy():
                done.append("incident console")
            if "earlier alarms" in waits and streams_ready:
                if settling is None:
                    settling = self._settle_earlier_alarms()
                if not self._still_open(settling):
                    done.append("earlier alarms")
            for what in done:
                waits.remove(what)
            if done:
                bar.update(len(done))
                bar.set_postfix_str("waiting for " + ", ".join(waits) if waits else "ready")
            if waits:
                time.sleep(0.5)
        bar.close()

    def _log(self, name: str) -> str:
        return self.stages[name].log_path.read_text(errors="replace")

    def _console_healthy(self) -> bool:
        url = f"{self.settings.console.public_url.rstrip('/')}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own URL
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _settle_earlier_alarms(self) -> list[UUID]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT DISTINCT alarm_id FROM alerts WHERE source_kind = 'dumping' "
                "AND source_id = %s AND state = ANY(%s)",
                (DUMPING_CAMERA, sorted(SETTLEABLE_STATES)),
            ).fetchall()
        alarm_ids = [row[0] for row in rows]
        for alarm_id in alarm_ids:
            self.run_command(
                "resolving an earlier demo alarm",
                "alarm", "resolve", str(alarm_id), "--by", "pantau demo",
                "--note", "a new demo run begins",
            )  # fmt: skip
        return alarm_ids

    def _still_open(self, alarm_ids: Sequence[UUID]) -> bool:
        if not alarm_ids:
            return False
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM alerts WHERE alarm_id = ANY(%s) AND state = ANY(%s)",
                (list(alarm_ids), sorted(SETTLEABLE_STATES)),
            ).fetchone()
        return bool(row and row[0])

    def _stop_previous_console(self) -> None:
        """A console an earlier `--keep-console` run left holds the port: stop it."""
        pid_file = self.out / CONSOLE_PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        pid_file.unlink(missing_ok=True)
        if not _is_pantau_console(pid):
            return
        print(f"stopping the incident console an earlier demo left running (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _is_pantau_console(pid) and time.monotonic() < deadline:
            time.sleep(0.2)

    def _progress(self, before: dict[str, int]) -> None:
        total = round(self.duration)
        bar = tqdm(total=total, unit="s", desc="demo", file=sys.stdout)
        shown = 0
        started = time.monotonic()
        while self.stages["ingest-camera"].process.poll() is None or (
            self.stages["simulate-sensors"].process.poll() is None
        ):
            time.sleep(1.0)
            self.check_alive()
            now = self.counts()
            received = self.inbox.received()
            bar.set_postfix(
                frames=now["frames"] - before.get("frames", 0),
                detected=now["detections"] - before.get("detections", 0),
                readings=now["readings"] - before.get("readings", 0),
                dumping_alarms=sum(
                    r.alarm_type == "dumping" and r.change == "opened" for r in received
                ),
                notified=len(received),
                refresh=False,
            )
            elapsed = min(round(time.monotonic() - started), total)
            bar.update(elapsed - shown)
            shown = elapsed
        bar.update(total - shown)
        bar.close()

    def _drain(self) -> None:
        topics = self.topics
        sink_topics = [
            topics.readings,
            topics.detections,
            topics.camera_health,
            topics.dumping_events,
            topics.alerts,
            topics.notifications,
        ]
        sink_topics += topics.all_dead_letter_topics()
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        bar = tqdm(desc="catching up", bar_format="{desc}: {elapsed} {postfix}", file=sys.stdout)
        while time.monotonic() < deadline:
            self.check_alive("sink", "detect", "ingest-sensors", "streams", "notify")
            detect_lag = kafka.group_lag(
                self.settings.kafka, self.settings.detect.group_id, [topics.frames]
            )
            sink_lag = kafka.group_lag(
                self.settings.kafka, self.settings.sink.group_id, sink_topics
            )
            bar.set_postfix(detector_lag=detect_lag, sink_lag=sink_lag, refresh=True)
            if detect_lag == 0 and sink_lag == 0:
                bar.close()
                return
            time.sleep(1.0)
        bar.close()
        raise DemoError(f"the detector or sink did not catch up within {_DRAIN_TIMEOUT_S:.0f} s")

    def _wait_for_alarms(self) -> list[DumpingAlarm]:
        """Every camera's latest dumping event of this run has its alarm stored, and the
        notifier has queued and sent what the routes ask for."""
        bar = tqdm(desc="alarms", bar_format="{desc}: {elapsed} {postfix}", file=sys.stdout)
        deadline = time.monotonic() + _ALARM_TIMEOUT_S
        while True:
            self.check_alive("sink", "detect", "streams", "notify")
            latest, alarms = self._dumping_alarms()
            stored = {a.event_id for a in alarms}
            missing = [event for event in latest if event not in stored]
            notify_lag = kafka.group_lag(
                self.settings.kafka, self.settings.notify.group_id, [self.topics.alerts]
            )
            pending = sum(a.pending for a in alarms)
            bar.set_postfix(
                events=len(latest),
                alarms_stored=len(alarms),
                sent=sum(a.sent for a in alarms),
                pending=pending,
                refresh=True,
            )
            if not missing and notify_lag == 0 and pending == 0:
                # The sink stores the delivery log a moment after the outbox says sent.
                bar.close()
                return alarms
            if time.monotonic() > deadline:
                bar.close()
                waited = (
                    f"an alarm for dumping events {', '.join(map(str, missing))}"
                    if missing
                    else f"the notifier ({notify_lag} alarm messages unread, {pending} pending)"
                )
                raise DemoError(
                    f"waited {_ALARM_TIMEOUT_S:.0f} s for {waited}\n--- streams:\n"
                    f"{self.stages['streams'].tail()}\n--- notify:\n{self.stages['notify'].tail()}"
                )
            time.sleep(1.0)

    def _dumping_alarms(self) -> tuple[list[UUID], list[DumpingAlarm]]:
        """(each camera's latest dumping event alerted in this run, the alarms they opened or
        updated, with their notifications)."""
        with self.connect() as conn:
            latest = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT ON (camera_id) event_id FROM dumping_events "
                    "WHERE alerted_at IS NOT NULL AND stored_at >= %s "
                    "ORDER BY camera_id, alerted_at DESC",
                    (self.since,),
                ).fetchall()
            ]
            alarms = [
                DumpingAlarm(*row)
                for row in conn.execute(
                    "SELECT alarm_id, source_id, state, severity, opened_at, event_id FROM alerts "
                    "WHERE source_kind = 'dumping' AND event_id = ANY(%s) ORDER BY opened_at",
                    (latest,),
                ).fetchall()
            ]
            by_id = {a.alarm_id: a for a in alarms}
            for alarm_id, status, route in conn.execute(
                "SELECT alarm_id, status, route FROM notification_outbox "
                "WHERE alarm_id = ANY(%s) AND queued_at >= %s ORDER BY queued_at",
                (list(by_id), self.since),
            ).fetchall():
                alarm = by_id[alarm_id]
                if status == "sent":
                    alarm.sent += 1
                    if route not in alarm.routes:
                        alarm.routes.append(route)
                elif status == "failed":
                    alarm.failed += 1
                else:
                    alarm.pending += 1
        return latest, alarms

    def _keep_console(self) -> dict[str, Any]:
        """Give the demo operator a fresh password and leave the console running."""
        added = subprocess.run(
            self.command("users", "add", DEMO_USER, "--role", "operator", "--name", "Demo"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
        )
        if added.returncode == 1 and "exists already" in added.stderr:
            added = self.run_command(
                f"setting the password of {DEMO_USER}", "users", "password", DEMO_USER
            )
        elif added.returncode != 0:
            raise DemoError(f"adding the user {DEMO_USER} failed:\n{added.stderr}")
        match = re.search(r"^password: (\S+)$", added.stdout, re.MULTILINE)
        if match is None:
            raise DemoError(f"no password in the answer of `pantau users`:\n{added.stdout}")
        stage = self.detach("console")
        pid_file = self.out / CONSOLE_PID_FILE
        pid_file.write_text(f"{stage.process.pid}\n")
        return {
            "url": f"{self.settings.console.public_url.rstrip('/')}/incidents",
            "user": DEMO_USER,
            "password": match.group(1),
            "pid": stage.process.pid,
            "pid_file": pid_file,
            "log": stage.log_path,
        }

    def _annotated_frames(self, snapshots: Path) -> list[Path]:
        """The last annotated frame of each camera: `annotated-frame.png` for the first,
        `annotated-frame-<camera>.png` for the others."""
        written = []
        ids = [c.id for c in self.settings.cameras if c.id != DUMPING_CAMERA] + [DUMPING_CAMERA]
        for i, camera_id in enumerate(ids):
            picture = snapshots / f"{camera_id}.png"
            if not picture.is_file():
                continue
            name = "annotated-frame.png" if i == 0 else f"annotated-frame-{camera_id}.png"
            target = self.out / name
            shutil.copyfile(picture, target)
            written.append(target)
        return written

    def _frames_skipped(self) -> int:
        """Frames the detector let go because they were too old when it got to them (it
        fell behind; detect.max_frame_age_s)."""
        found = re.findall(r"(\d+) frames skipped \(too old\)", self._log("detect"))
        return int(found[-1]) if found else 0

    def _last_lines(self, stage: str, prefix: str) -> list[str]:
        lines = self.stages[stage].log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if line.startswith(prefix)]


def _port_in_use(host: str, port: int) -> bool:
    address = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


def _is_pantau_console(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        # No /proc (macOS): the pid file was the demo's own; trust it.
        return True
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"pantau.cli" in args and b"console" in args


def format_summary(result: dict[str, Any]) -> str:
    k = result["kafka"]
    db = result["db"]
    frames = k["frames"]
    camera_fps = frames / max(result["camera_s"], 1e-6)
    detect_fps = k["detections"] / max(result["pipeline_s"], 1e-6)
    dead_kafka = sum(v for name, v in k.items() if name.startswith("dead letters"))
    alarms: list[DumpingAlarm] = result["alarms"]
    opened = [a for a in alarms if a.opened_at >= result["since"]]
    lines = [
        "",
        "Pantau demo — summary",
        "=====================",
        f"frames in (published by the cameras)  {frames:>7}   ({camera_fps:.1f} frames/s)",
        f"frames detected                       {k['detections']:>7}   "
        f"({detect_fps:.1f} frames/s end to end)",
        f"frames skipped (too old to detect)    {result['skipped']:>7}",
        f"camera heartbeats                     {k['heartbeats']:>7}",
        f"sensor readings accepted              {k['readings']:>7}",
        f"dead letters                          {dead_kafka:>7}",
        f"dumping alarms opened                 {len(opened):>7}",
        f"notifications sent for them           {sum(a.sent for a in alarms):>7}",
        "",
        "detections by class (stored):",
    ]
    by_label = db["detections_by_label"] or {"(none)": 0}
    lines += [f"  {label:<20} {count:>7}" for label, count in by_label.items()]
    lines += ["", "sensor values stored, by quantity:"]
    lines += [f"  {q:<20} {n:>7}" for q, n in db["readings_by_quantity"].items()]
    lines += ["", "dead letters by reason:"]
    reasons = db.get("dead_letter_reasons") or []
    lines += [f"  {r['count']:>4} x [{r['stage']}] {r['error'][:120]}" for r in reasons] or [
        "  none"
    ]
    lines += ["", "rows stored in PostgreSQL (this run / table total):"]
    lines += [
        f"  {table:<20} {db['rows_since'][table]:>7} / {total}"
        for table, total in db["rows_total"].items()
    ]
    lines += ["", *_dumping_section(result), ""]
    lines += result["detector_line"]
    lines += result["camera_lines"]
    lines.append(f"caught up {result['drain_s']:.1f} s after the sources stopped")
    if result["annotated"]:
        lines += [f"annotated frame: {path}" for path in result["annotated"]]
    else:
        lines.append("annotated frame: none (no detections)")
    lines.append(f"logs of every stage: {result['logs']}")
    login = result["console"]
    if login is not None:
        lines += [
            "",
            f"The incident console is still running: {login['url']}",
            f"  log in as {login['user']} (operator), password: {login['password']}",
            f"  stop it with: kill $(cat {login['pid_file']})   (pid {login['pid']}, "
            f"log {login['log']})",
        ]
    return "\n".join(lines)


def _dumping_section(result: dict[str, Any]) -> list[str]:
    alarms: list[DumpingAlarm] = result["alarms"]
    scene = result["scene"]
    tz = ZoneInfo(result["timezone"])
    lines = [
        f"dumping alarms ({DUMPING_CAMERA} plays a bag left on the pavement at "
        f"{scene['drop_at']:.1f} s, due to alarm at {scene['due_at']:.1f} s):"
    ]
    if not alarms:
        why = (
            "the cameras stopped before it was due"
            if scene["too_short"]
            else "no dumping event was raised; see the detect log"
        )
        lines.append(f"  none: {why}")
    received: list[Received] = result["inbox"]
    for alarm in alarms:
        when = alarm.opened_at.astimezone(tz).strftime("%H:%M:%S %Z")
        # An alarm still open from before takes a new event in as an update, quietly.
        how = "opened" if alarm.opened_at >= result["since"] else "updated, open since"
        lines.append(
            f"  {alarm.state:<6} {alarm.severity:<6} {alarm.source_id:<14} {how} {when}   "
            f"{result['incident_url'](str(alarm.alarm_id))}"
        )
        routes = f" ({', '.join(alarm.routes)})" if alarm.routes else ""
        lines.append(
            f"         notifications: {alarm.sent} sent{routes}, {alarm.pending} pending, "
            f"{alarm.failed} failed"
        )
        first = next((r for r in received if r.alarm_id == str(alarm.alarm_id)), None)
        if first is not None:
            lines.append(f"         as received: {first.subject!r} ({first.path.name})")
    lines.append(
        f"notifications received by the demo's webhook (all alarms): {len(received)}, "
        f"kept in {result['inbox_dir']}"
    )
    return lines


def _handle(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    if not settings.cameras or not settings.sensors or settings.detector is None:
        print("pantau demo: the settings need a camera, sensors and a detector", file=sys.stderr)
        return 2
    out = (args.out or settings.services.state_dir / "demo").absolute()
    demo = Demo(ctx, settings, out, args.duration, keep_console=args.keep_console)
    try:
        result = demo.run(args.malformed_every)
    except (DemoError, services.ServicesError, kafka.KafkaUnavailable, psycopg.Error) as exc:
        print(f"pantau demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop_all()
    print(format_summary(result))
    return 0
