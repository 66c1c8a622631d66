"""Evidence that cannot be written holds no dumping event back: with the evidence store
unwritable (`pantau detect-file`) or full (`pantau detect` through Kafka into PostgreSQL), the
left bag's event still goes out, marked with why its evidence is missing, and detection goes
on. The store full is a real, small tmpfs filled up; the tests run as root, and a machine
where it cannot be mounted fails the test, never skips it."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from detectors.evaluation.synthetic import SceneSpec, SyntheticScene, write_scene
from tests.integration.conftest import Pipeline

DWELL_S = 10


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A bag put down and left: the video and the zones a deployer would draw."""
    scene = SyntheticScene(SceneSpec("drop_and_leave", seed=0, duration_s=30.0))
    assert scene.truth.expects_event(DWELL_S)
    video, _ = write_scene(scene, tmp_path / "scene")
    return video, scene.truth.camera_zones(dwell_s=DWELL_S)


def unwritable(tmp_path: Path) -> tuple[Path, str]:
    """An evidence folder nobody may create, and the reason the events should give.

    A folder of mode 0o500 refuses ordinary users but not root, which may write anywhere;
    a path through a regular file is refused to everyone."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    locked.chmod(0o500)
    try:
        (locked / "probe").write_bytes(b"")
    except PermissionError:
        return locked / "evidence", "PermissionError: [Errno 13] Permission denied"
    (locked / "probe").unlink()
    plain = tmp_path / "a-file"
    plain.write_text("where the evidence folder should be")
    return plain / "evidence", "NotADirectoryError: [Errno 20] Not a directory"


def fill(path: Path) -> int | None:
    """Write zeros to `path` until the filesystem refuses; the errno it refused with (None
    when 64 MiB went in)."""
    with path.open("wb", buffering=0) as filler:
        for _ in range(1024):
            try:
                filler.write(b"\0" * 65536)
            except OSError as exc:
                return exc.errno
    return None


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled to the last byte."""
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(
            "this test fills a small tmpfs to make the evidence store full, and mounting one "
            f"failed (exit {result.returncode}: {result.stderr.strip()}); it needs root with "
            "the right to mount (CAP_SYS_ADMIN)",
            pytrace=False,
        )
    try:
        assert fill(mount / "filler") == errno.ENOSPC
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_an_unwritable_store_marks_the_event_and_the_run_goes_on(
    pipeline: Pipeline, tmp_path: Path, scene: tuple[Path, list[dict[str, Any]]]
) -> None:
    video, zones = scene
    store, reason = unwritable(tmp_path)
    camera = tmp_path / "camera.yaml"
    camera.write_text(yaml.safe_dump({"id": "tps-gedeg", "fps": 5, "zones": zones}))
    out = pipeline.run(
        "detect-file", str(video), "--camera-config", str(camera), "--json",
        "--evidence-dir", str(store), timeout=600,
    )  # fmt: skip
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(events) >= 2, out
    alert, last = events[0], events[-1]
    # The alert at once, marked: its stills could not be written ...
    assert (alert["phase"], alert["state"], alert["evidence"]) == ("new", "alerted", [])
    assert alert["evidence_error"] == f"before, alert, owner missing: {reason}"
    # ... and the event's last step once the clip was tried too.
    assert (last["event_id"], last["state"], last["evidence"]) == (alert["event_id"], "alerted", [])
    assert last["evidence_error"] == f"before, alert, owner, clip missing: {reason}"
    assert str(tmp_path) not in alert["evidence_error"]
    # The whole video was run, and the failure was logged once, not per artefact.
    assert "detect-file: 150 frames over" in out, out
    assert out.count("evidence not written") == 1, out
    assert not store.exists()


def test_a_full_store_marks_the_stored_event_and_the_detector_keeps_running(
    isolated_pipeline: Pipeline, full_store: Path, scene: tuple[Path, list[dict[str, Any]]]
) -> None:
    # A database of its own: every dumping event in it is this test's.
    pipeline = isolated_pipeline
    video, zones = scene
    env = {
        "PANTAU__CAMERAS__0__URL": str(video),
        "PANTAU__CAMERAS__0__ZONES": json.dumps(zones),
        "PANTAU__DETECT__MAX_FRAME_AGE_S": "0",
        "PANTAU__DUMPING__EVIDENCE__DIR": str(full_store / "evidence"),
    }
    detect = pipeline.start("detect", "detect", env=env)
    pipeline.start("sink", "sink", env=env)
    pipeline.run("ingest", "camera", "--no-realtime", env=env, timeout=300)
    no_space = "OSError: [Errno 28] No space left on device"

    def stored() -> list[tuple[Any, ...]]:
        with pipeline.db() as conn:
            return conn.execute(
                "SELECT state, jsonb_array_length(evidence), evidence_error FROM dumping_events"
            ).fetchall()

    # The clip is the last artefact tried; the row's latest version carries it.
    pipeline.wait_for(
        "the dumping event in PostgreSQL with its clip's failure",
        lambda: any("clip" in (row[2] or "") for row in stored()),
        timeout=400,
    )
    assert stored() == [("alerted", 0, f"before, alert, owner, clip missing: {no_space}")]
    assert detect.poll() is None, pipeline.all_logs()
    log = pipeline.log_of(detect)
    assert log.count("evidence not written") == 1, log
    assert pipeline.stop(detect) == 0, log
