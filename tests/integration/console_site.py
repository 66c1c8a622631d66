"""A running site for the console's tests: the stream processor, the sink and the console
on the real services, users of every role, and alarms raised the way the pipeline raises
them (a dumping event with a real evidence pack, readings over a threshold)."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from pantau import kafka
from pantau.ids import stable_id
from pantau.messages import AlarmAction, Box, DumpingEvent, EvidenceRef, SensorReading
from pantau.settings import Settings, load_settings
from pantau.topics import Topics
from tests.conftest import SAMPLE_CLIP
from tests.integration.conftest import (
    BASE_CONFIG,
    Pipeline,
    base_environ,
    drop_topics,
    fresh_database,
)

PASSWORD = "kali-brantas-2026"
# (user, role, kecamatan)
USERS = (
    ("operator1", "operator", ()),
    ("field-sooko", "dlh_field", ("Sooko",)),
    ("field-gedeg", "dlh_field", ("Gedeg",)),
    ("wall", "viewer", ()),
    ("admin1", "admin", ()),
)
DUMPING_CAMERA = "demo-table"  # in kecamatan Sooko
WATER_SENSOR = "wl-brantas-lengkong"  # in kecamatan Mojoanyar
# The object left behind and its owner, in the sample scene's 640x360 frames.
OBJECT_BOX = (402.0, 228.0, 470.0, 300.0)
OWNER_CROP = (330, 60, 520, 360)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_frames(first: int, count: int, step: int = 1) -> list[np.ndarray]:
    """Frames of the shared sample clip (a real scene), at the detect stream's 640x360."""
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok, f"cannot read frame {first + len(frames) * step} of {SAMPLE_CLIP}"
        frames.append(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
        for _ in range(step - 1):
            capture.grab()
    capture.release()
    return frames


def clip_bytes(path: Path, fps: float = 5.0) -> None:
    """A short clip in WebM, as the detector writes it (a browser plays VP8 and VP9 alike)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"VP80"), fps, (640, 360))
    assert writer.isOpened(), "OpenCV cannot write WebM (VP8) here"
    for frame in sample_frames(300, 40, step=2):
        writer.write(frame)
    writer.release()


def still_bytes(
    frame_index: int, label: str, crop: tuple[int, int, int, int] | None = None
) -> bytes:
    [image] = sample_frames(frame_index, 1)
    cv2.putText(image, label, (8, 352), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    if crop is not None:
        x1, y1, x2, y2 = crop
        image = image[y1:y2, x1:x2]
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@dataclass
class Site:
    pipeline: Pipeline
    url: str
    evidence_dir: Path
    settings: Settings
    seq: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    # The dumping event behind each alarm raised, as the detector first sent it.
    events: dict[uuid.UUID, DumpingEvent] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.kafka)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=20, follow_redirects=False)

    def login(self, username: str, password: str = PASSWORD) -> httpx.Client:
        """A client with a session: what a browser holds after the login form."""
        client = self.client()
        page = client.get("/login")
        assert page.status_code == 200
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        done = client.post(
            "/login",
            data={"username": username, "password": password, "csrf": token.group(1)},
        )
        assert done.status_code == 303, done.text
        incidents = client.get("/incidents")
        csrf = re.search(r'data-csrf="([^"]+)"', incidents.text)
        assert csrf, incidents.text
        client.headers["X-CSRF-Token"] = csrf.group(1)
        return client

    def publish(self, topic: str, *messages: Any) -> None:
        producer = kafka.producer(self.settings.kafka, "test")
        try:
            for m in messages:
                kafka.publish(producer, topic, m).get(timeout=30)
        finally:
            producer.close()

    def evidence_pack(self, event_id: uuid.UUID) -> tuple[EvidenceRef, ...]:
        folder = self.evidence_dir / DUMPING_CAMERA / str(event_id)
        folder.mkdir(parents=True)
        artefacts = {
            "before": ("before.jpg", still_bytes(300, f"before {event_id.hex[:8]}")),
            "alert": ("alert.jpg", still_bytes(380, f"alert {event_id.hex[:8]}")),
            "owner": ("owner.jpg", still_bytes(340, f"owner {event_id.hex[:8]}", OWNER_CROP)),
        }
        refs = []
        for kind, (name, data) in artefacts.items():
            (folder / name).write_bytes(data)
            refs.append(
                EvidenceRef(
                    kind=kind, uri=(folder / name).as_uri(), sha256=hashlib.sha256(data).hexdigest()
                )
            )
        clip = folder / "clip.webm"
        clip_bytes(clip)
        refs.append(
            EvidenceRef(
                kind="clip", uri=clip.as_uri(), sha256=hashlib.sha256(clip.read_bytes()).hexdigest()
            )
        )
        originals = folder / "originals"
        originals.mkdir()
        unblurred = still_bytes(380, f"alert {event_id.hex[:8]} original")
        (originals / "alert.jpg").write_bytes(unblurred)
        (originals / "SHA256SUMS").write_text(
            f"{hashlib.sha256(unblurred).hexdigest()}  alert.jpg\n"
        )
        return tuple(refs)

    def settle_dumping_alarm(self) -> None:
        """Resolve the camera's dumping alarm if one is still open: a new event would only
        update it (one alarm per source and type)."""
        with self.pipeline.db() as conn:
            row = conn.execute(
                "SELECT alarm_id FROM alerts WHERE source_id = %s AND alarm_type = 'dumping' "
                "AND state IN ('OPEN', 'ACK', 'DISPATCHED') ORDER BY opened_at DESC LIMIT 1",
                (DUMPING_CAMERA,),
            ).fetchone()
        if row is None:
            return
        self.seq += 1
        self.publish(
            self.topics.alarm_actions,
            AlarmAction(
                id=uuid.uuid4(),
                ts_capture=datetime.now(UTC),
                seq=self.seq,
                action="resolve",
                source_kind="dumping",
                source_id=DUMPING_CAMERA,
                alarm_id=row[0],
                by="test-setup",
            ),
        )
        self.wait_for_alarm("alarm_id = %s AND state = 'RESOLVED'", row[0])

    def raise_dumping_alarm(self) -> uuid.UUID:
        """A new dumping event on the Sooko camera, evidence and all; the alarm's id once
        the sink stored it (a fresh alarm: one still open on the camera is resolved first)."""
        self.settle_dumping_alarm()
        event_id = uuid.uuid4()
        now = datetime.now(UTC)
        self.seq += 1
        event = DumpingEvent(
            id=stable_id("console-test", event_id),
            ts_capture=now,
            seq=self.seq,
            event_id=event_id,
            phase="new",
            version=0,
            camera_id=DUMPING_CAMERA,
            state="alerted",
            appeared_at=now - timedelta(seconds=45),
            owner_left_at=now - timedelta(seconds=35),
            alerted_at=now,
            box=Box(
                class_id=26,
                label="handbag",
                confidence=0.7,
                x1=OBJECT_BOX[0],
                y1=OBJECT_BOX[1],
                x2=OBJECT_BOX[2],
                y2=OBJECT_BOX[3],
            ),
            owner_track_id=3,
            confidence=0.8,
            evidence=self.evidence_pack(event_id),
        )
        self.publish(self.topics.dumping_events, event)
        alarm_id = self.wait_for_alarm("event_id = %s", event_id)
        self.events[alarm_id] = event
        return alarm_id

    def dumping_step(
        self, alarm_id: uuid.UUID, phase: str, state: str, after_s: float = 0.0
    ) -> None:
        """The detector's next word on the alarm's event, `after_s` after now."""
        first = self.events[alarm_id]
        self.seq += 1
        at = datetime.now(UTC) + timedelta(seconds=after_s)
        self.publish(
            self.topics.dumping_events,
            first.model_copy(
                update={
                    "id": uuid.uuid4(),
                    "seq": self.seq,
                    "ts_capture": at,
                    "phase": phase,
                    "state": state,
                    "version": first.version + self.seq,
                    "ended_at": at if phase == "end" else None,
                }
            ),
        )

    def raise_water_alarm(self, level: float = 3.6) -> uuid.UUID:
        now = datetime.now(UTC)
        readings = []
        for i, value in enumerate((2.4, level)):
            self.seq += 1
            readings.append(
                SensorReading(
                    id=uuid.uuid4(),
                    ts_capture=now - timedelta(seconds=20 - i * 10),
                    seq=self.seq,
                    sensor_id=WATER_SENSOR,
                    sensor_type="water_level",
                    values={"waterLevel": value},
                    ts_ingest=now,
                )
            )
        self.publish(self.topics.readings, *readings)
        return self.wait_for_alarm(
            "source_id = %s AND state = 'OPEN' AND updated_at >= %s",
            WATER_SENSOR,
            now - timedelta(seconds=11),
        )

    def wait_for_alarm(self, where: str, *params: object) -> uuid.UUID:
        found: list[uuid.UUID] = []

        def stored() -> bool:
            value = self.pipeline.scalar(
                f"SELECT alarm_id FROM alerts WHERE {where} ORDER BY opened_at DESC LIMIT 1",  # noqa: S608
                *params,
            )
            if value is not None:
                found.append(value)
            return value is not None

        self.pipeline.wait_for("the alarm stored", stored, timeout=60)
        return found[0]

    def stored_state(
        self, client: httpx.Client, alarm_id: uuid.UUID, version: int, timeout: float = 30
    ) -> dict[str, Any]:
        """The alarm as the console reads it from the database, once the sink has stored
        `version` (the live feed knows of a decision before the database does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = client.get(f"/api/v1/alarms/{alarm_id}").json()
            if body["alarm"]["version"] >= version:
                return body
            time.sleep(0.2)
        raise AssertionError(f"alarm {alarm_id} version {version} not stored in {timeout:.0f} s")

    def outcome(self, client: httpx.Client, action_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = client.get(f"/api/v1/actions/{action_id}").json()
            if body["status"] != "pending":
                return body
            time.sleep(0.3)
        raise AssertionError(f"action {action_id} still pending after {timeout:.0f} s")


@pytest.fixture(scope="module")
def site(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    tag = f"t{uuid.uuid4().hex[:8]}"
    port = free_port()
    evidence = tmp / "evidence"
    evidence.mkdir()
    with fresh_database(services, "pantau_console") as database:
        env = {
            **base_environ(),
            "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
            "PANTAU__POSTGRES__DBNAME": database,
            "PANTAU__SINK__GROUP_ID": f"{tag}-sink",
            "PANTAU__STREAMS__APP_ID": f"{tag}-streams",
            "PANTAU__STREAMS__DATA_DIR": str(tmp / "streams"),
            "PANTAU__SINK__WORKERS": "1",
            "PANTAU__SINK__FLUSH_INTERVAL_S": "0.2",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(evidence),
            "PANTAU__CONSOLE__PORT": str(port),
            "PANTAU__CONSOLE__PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PANTAU__CONSOLE__LOGIN_ATTEMPTS": "3",
            "PANTAU__CONSOLE__LOGIN_WINDOW_S": "5",
            # The tests stand in for a TLS proxy on this host.
            "PANTAU__CONSOLE__TRUSTED_PROXIES": '["127.0.0.1"]',
            "PANTAU__RUNTIME__STATUS_DIR": str(tmp / "health"),
        }
        settings = load_settings(BASE_CONFIG, env)
        logs = tmp / "logs"
        logs.mkdir()
        line = Pipeline(settings=settings, env=env, tag=tag, logs=logs)
        site = Site(line, f"http://127.0.0.1:{port}", evidence, settings)
        try:
            for username, role, kecamatan in USERS:
                args = ["users", "add", username, "--role", role, "--password-stdin"]
                for k in kecamatan:
                    args += ["--kecamatan", k]
                done = subprocess.run(
                    line.command(*args),
                    input=PASSWORD + "\n",
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, done.stderr
            site.tokens["operator1"] = line.run(
                "users", "token", "operator1", "--name", "tests"
            ).strip()
            line.start("streams", "streams")
            line.start("sink", "sink")
            line.start("console", "console")

            def up() -> bool:
                try:
                    return httpx.get(f"{site.url}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            line.wait_for("the console to answer", up, timeout=90)
            yield site
        finally:
            line.stop_all()
            drop_topics(settings, tag)
