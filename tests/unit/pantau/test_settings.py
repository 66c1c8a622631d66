from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pantau.settings import SettingsError, load_settings
from tests.conftest import REPO

MINIMAL = """
kafka:
  bootstrap_servers: broker:9092
cameras:
  - id: gerbang-01
    url: rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/stream
    fps: 2
sensors:
  - id: aq-01
    type: air_quality
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(textwrap.dedent(text))
    return path


ENV = {"CAM_USER": "admin", "CAM_PASS": "rahasia"}


def test_loads_values_and_interpolates_secrets_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), ENV)
    assert settings.kafka.bootstrap_servers == "broker:9092"
    camera = settings.camera("gerbang-01")
    assert camera.url.get_secret_value() == "rtsp://admin:rahasia@10.0.0.5/stream"
    # The secret never shows in the object's text form.
    assert "rahasia" not in repr(settings) and "rahasia" not in str(camera)
    assert camera.fps == 2


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), ENV)
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka.bootstrap_servers = "elsewhere:9092"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kafka:\n  bootstrap_server: x:1\n",
            "kafka.bootstrap_server: unknown key 'bootstrap_server'",
        ),
        ("kafka:\n  bootstrap_server: x:1\n", "did you mean 'bootstrap_servers'?"),
        ("cameras:\n  - id: c1\n    url: a.mp4\n    fsp: 3\n", "cameras[0].fsp: unknown key 'fsp'"),
        (
            "sink:\n  flush_interval_s: 5\n",
            "sink.flush_interval_s: Input should be less than or equal to 1",
        ),
        ("sensors:\n  - id: s1\n    type: radar\n", "sensors[0].type: Input should be"),
        (
            "cameras:\n  - id: Bad Id\n    url: a.mp4\n",
            "cameras[0].id: String should match pattern",
        ),
        ("detector:\n  model: m.pt\n  imgsz: 500\n", "detector.imgsz: Input should be 320 or 640"),
        (
            "sensors:\n  - {id: s1, type: water_level}\n  - {id: s1, type: water_level}\n",
            "sensor id 's1' is used twice",
        ),
        ("colour: blue\n", "unknown key 'colour'"),
    ],
)
def test_invalid_settings_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_environment_override_wins_and_is_named_when_wrong(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    settings = load_settings(path, {**ENV, "PANTAU__CAMERAS__0__FPS": "7.5"})
    assert settings.cameras[0].fps == 7.5
    with pytest.raises(
        SettingsError,
        match=r"environment variable PANTAU__KAFKA__BOOTSTRAP: "
        r"kafka.bootstrap: unknown key",
    ):
        load_settings(path, {**ENV, "PANTAU__KAFKA__BOOTSTRAP": "x:1"})
    with pytest.raises(SettingsError, match="has 1 items"):
        load_settings(path, {**ENV, "PANTAU__CAMERAS__3__FPS": "1"})


def test_a_choice_of_numbers_takes_its_value_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "detector:\n  model: yolo11n.pt\n")
    settings = load_settings(path, {**ENV, "PANTAU__DETECTOR__IMGSZ": "320"})
    assert settings.detector is not None
    assert settings.detector.imgsz == 320
    assert load_settings(path, {**ENV, "PANTAU__MQTT__QOS": "2"}).mqtt.qos == 2
    with pytest.raises(SettingsError, match=r"detector.imgsz: Input should be 320 or 640"):
        load_settings(path, {**ENV, "PANTAU__DETECTOR__IMGSZ": "300"})


def test_list_valued_override_is_parsed(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MINIMAL), {**ENV, "PANTAU__DEBUG__FAILPOINTS": "[sink.after_db_commit]"}
    )
    assert settings.debug.failpoints == ("sink.after_db_commit",)


def test_missing_variable_without_default_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CAM_PASS is not set"):
        load_settings(write(tmp_path, MINIMAL), {"CAM_USER": "admin"})


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - id: c1\n    url: 12\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert "cameras[0].url" in str(caught.value)
    assert "got" not in str(caught.value)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "pantau.yaml"
    path.write_text("detector:\n  model: ../models/m.pt\ncameras:\n  - id: c1\n    url: clip.mp4\n")
    settings = load_settings(path, {})
    assert settings.detector is not None
    assert settings.detector.model == tmp_path / "models" / "m.pt"
    assert settings.cameras[0].url.get_secret_value() == str(tmp_path / "conf" / "clip.mp4")
    assert settings.services.state_dir == tmp_path / ".pantau"


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", {})
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(write(tmp_path, "kafka: [unclosed\n"), {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_check_config_accepts_the_shipped_config() -> None:
    result = run_cli("check-config")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_rejects_a_misspelt_key_with_a_readable_message(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  hots: localhost\n")
    result = run_cli("--config", str(path), "check-config")
    assert result.returncode == 2
    assert f"{path}: mqtt.hots: unknown key 'hots' (did you mean 'host'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_evidence_buffer_must_reach_back_past_the_drop(tmp_path: Path) -> None:
    config = tmp_path / "pantau.yaml"
    config.write_text(
        "cameras:\n"
        "  - id: tps-1\n"
        "    url: rtsp://cam/1\n"
        "    zones:\n"
        "      - {id: jalan, kind: watch, dwell_s: 90, polygon: [[0, 0], [1, 0], [1, 1]]}\n"
    )
    with pytest.raises(SettingsError, match=r"buffer_s \(120 s\).*130 s for camera tps-1"):
        load_settings(config, {})
    assert load_settings(config, {"PANTAU__DUMPING__EVIDENCE__BUFFER_S": "130"}).cameras


def test_without_a_class_list_people_vehicles_and_carriables_are_kept(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "detector:\n  model: yolo11n.pt\n"), {})
    assert settings.detector is not None
    classes = settings.detector.classes
    assert set(classes) == {
        "person", "bicycle", "car", "motorcycle", "bus", "truck",
        "backpack", "handbag", "suitcase", "bottle",
    }  # fmt: skip
    assert classes["person"] == 0.35 and classes["truck"] == 0.4 and classes["handbag"] == 0.25
    # No default asks for less than the network's default floor.
    assert min(classes.values()) >= settings.detector.confidence


def test_a_class_list_replaces_the_default_one_and_takes_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "detector:\n  model: m.pt\n  classes:\n    person: 0.5\n    dog: 0.6\n")
    settings = load_settings(path, {})
    assert settings.detector is not None and settings.detector.classes == {
        "person": 0.5,
        "dog": 0.6,
    }
    overridden = load_settings(path, {"PANTAU__DETECTOR__CLASSES__PERSON": "0.45"})
    assert overridden.detector is not None
    assert overridden.detector.classes == {"person": 0.45, "dog": 0.6}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  classes: {}\n", "detector.classes: Dictionary should have at least 1 item"),
        ("  classes:\n    person: 1.5\n", "detector.classes.person: Input should be less than 1"),
        ("  classes:\n    person: 0\n", "detector.classes.person: Input should be greater than 0"),
        ("  classes:\n    person: high\n", "detector.classes.person: Input should be a valid"),
        ("  classes: [person, car]\n", "detector.classes: Value error, expected class name ->"),
        (
            "  confidence: 0.3\n  classes:\n    person: 0.35\n    handbag: 0.25\n",
            "detector.classes: handbag (0.25) is below detector.confidence (0.3)",
        ),
    ],
)
def test_a_wrong_class_list_names_the_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "detector:\n  model: m.pt\n" + text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_the_shipped_config_keeps_people_vehicles_and_carriables_only() -> None:
    settings = load_settings(REPO / "configs" / "pantau.yaml", {})
    assert settings.detector is not None
    classes = settings.detector.classes
    assert {"person", "car", "motorcycle", "truck", "backpack", "handbag"} <= set(classes)
    assert not {"skateboard", "frisbee", "cat", "dog"} & set(classes)
