"""`detector.type: auto`: how a candidate's detections are compared with the reference, which
candidate wins, and when the cached choice is used, on made-up backends."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from detectors import calibration
from detectors.backends import DetectorError
from detectors.calibration import Trial, agreement, calibrate, cpu_signature, pick
from detectors.detections import Detections
from pantau.settings import AutoDetector, SettingsError, load_settings


def boxes(*rows: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    return Detections(
        xyxy=np.array([r[2] for r in rows], dtype=np.float32).reshape(-1, 4),
        confidence=np.array([r[1] for r in rows], dtype=np.float32),
        class_id=np.array([r[0] for r in rows], dtype=np.int64),
    )


PERSON = (0, 0.9, (100.0, 100.0, 200.0, 300.0))
BOTTLE = (39, 0.7, (10.0, 10.0, 30.0, 60.0))


def test_the_same_boxes_agree_fully_and_a_shifted_or_relabelled_one_does_not() -> None:
    ref = [boxes(PERSON, BOTTLE)]
    assert agreement(ref, [boxes(PERSON, BOTTLE)]) == 1.0
    # 4 px to the side on a 100 px wide box: IoU 0.92, still the same box.
    nudged = (0, 0.8, (104.0, 100.0, 204.0, 300.0))
    assert agreement(ref, [boxes(nudged, BOTTLE)]) == 1.0
    # 12 px: IoU 0.79, another box. Each side has two confident boxes, one matched.
    moved = (0, 0.8, (112.0, 100.0, 212.0, 300.0))
    assert agreement(ref, [boxes(moved, BOTTLE)]) == 0.5
    relabelled = (26, 0.7, BOTTLE[2])
    assert agreement(ref, [boxes(PERSON, relabelled)]) == 0.5


def test_weak_boxes_need_no_partner_but_a_confident_box_finds_one_at_any_confidence() -> None:
    weak = (28, 0.3, (300.0, 300.0, 350.0, 380.0))
    assert agreement([boxes(PERSON)], [boxes(PERSON, weak)]) == 1.0
    # The candidate's person is weak, but the reference's confident person finds it.
    assert agreement([boxes(PERSON)], [boxes((0, 0.3, PERSON[2]))]) == 1.0
    assert agreement([boxes(PERSON)], [Detections.empty()]) == 0.0
    assert agreement([Detections.empty()], [Detections.empty()]) == 1.0


def test_the_fastest_candidate_that_agrees_wins() -> None:
    trials = [
        Trial("openvino-int8", 6.0, 0.6),  # fastest, but finds other boxes
        Trial("openvino", 14.0, 1.0),
        Trial("onnx", 11.0, 0.95),
        Trial("broken", None, None, "no such file"),
    ]
    assert pick(trials, 0.9) == trials[2]
    assert pick(trials, 0.5) == trials[0]
    assert pick(trials[3:], 0.9) is None


def test_the_cpu_signature_names_the_model_and_the_decisive_instruction_sets() -> None:
    signature = cpu_signature()
    assert signature.endswith(f"x{__import__('os').cpu_count()}")
    assert "[" in signature and "]" in signature


class FakeBackend:
    """Detects the given boxes on every frame, taking `ms` per frame."""

    name: str
    names: Mapping[int, str]

    def __init__(self, name: str, ms: float, found: Detections) -> None:
        self.name, self.ms, self.found, self.names = name, ms, found, {0: "person"}

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        time.sleep(self.ms * len(images) / 1000.0)
        return [self.found for _ in images]


def test_calibration_chooses_caches_and_calibrates_again_on_another_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "net.pt"
    model.write_bytes(b"weights")
    auto = AutoDetector(model=model, exports_dir=tmp_path / "exports", calibration_s=0.05)
    fakes = {
        "onnx": FakeBackend("onnx", 8.0, boxes(PERSON)),
        "openvino": FakeBackend("openvino", 4.0, boxes(PERSON)),
        # The fastest, but its person is somewhere else.
        "openvino-int8": FakeBackend("int8", 1.0, boxes((0, 0.9, (150.0, 100, 250, 300)))),
    }
    loads: list[str] = []
    real = calibration.concrete
    # The int8 ONNX candidate goes through the real gate: these CPUs have no VNNI.
    monkeypatch.setattr(
        calibration,
        "concrete",
        lambda a, name, cpu=None: real(a, name, cpu) if name == "onnx-int8" else name,
    )

    def load(name: str) -> FakeBackend:
        loads.append(name)
        return fakes[name]

    frames = [np.zeros((8, 8, 3), dtype=np.uint8)] * 3
    choice, backend = calibrate(auto, frames=frames, cpu="CPU A", load=load)
    assert (choice.name, choice.cached, backend) == ("openvino", False, fakes["openvino"])
    by_name = {t.name: t for t in choice.trials}
    assert by_name["openvino-int8"].agreement == 0.0 and by_name["onnx"].agreement == 1.0
    assert by_name["openvino"].ms_per_frame < by_name["onnx"].ms_per_frame  # type: ignore[operator]
    skipped = by_name["onnx-int8"]
    assert skipped.ms_per_frame is None and "no VNNI" in (skipped.error or "")
    assert (auto.exports_dir / "calibration.json").exists()

    loads.clear()
    again, _ = calibrate(auto, frames=frames, cpu="CPU A", load=load)
    assert (again.name, again.cached, loads) == ("openvino", True, ["openvino"])

    # Another CPU (or another batch, size or model) is calibrated afresh.
    loads.clear()
    fakes["onnx"].ms = 1.0
    elsewhere, _ = calibrate(auto, frames=frames, cpu="CPU B", load=load)
    assert (elsewhere.name, elsewhere.cached) == ("onnx", False)
    assert sorted(loads) == ["onnx", "openvino", "openvino-int8"]


def test_calibration_fails_clearly_when_no_candidate_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "net.pt"
    model.write_bytes(b"weights")
    auto = AutoDetector(
        model=model, exports_dir=tmp_path, calibration_s=0.01, candidates=("openvino",)
    )
    monkeypatch.setattr(calibration, "concrete", lambda _auto, name, _cpu=None: name)
    fakes = {
        "onnx": FakeBackend("onnx", 1.0, boxes(PERSON)),
        "openvino": FakeBackend("openvino", 1.0, Detections.empty()),
    }
    with pytest.raises(DetectorError, match=r"no candidate agrees.*openvino .* agreement 0\.00"):
        calibrate(
            auto, frames=[np.zeros((8, 8, 3), dtype=np.uint8)], cpu="x", load=fakes.__getitem__
        )


def test_int8_onnx_is_a_candidate_only_where_the_cpu_has_vnni(tmp_path: Path) -> None:
    assert calibration.has_vnni("Intel Xeon [avx2 fma avx512f avx512_vnni] x8")
    assert calibration.has_vnni("Intel Core [avx2 fma avx_vnni] x4")
    assert not calibration.has_vnni("AMD EPYC [avx2 fma] x2")
    model = tmp_path / "net.pt"
    model.write_bytes(b"weights")
    auto = AutoDetector(model=model, exports_dir=tmp_path)
    assert "onnx-int8" in auto.candidates
    # Refused before anything is exported or quantized.
    with pytest.raises(DetectorError, match="not run: this CPU has no VNNI"):
        calibration.concrete(auto, "onnx-int8", "AMD EPYC [avx2 fma] x2")
    assert list(tmp_path.iterdir()) == [model]


def test_auto_wants_a_checkpoint_and_an_int8_folder(tmp_path: Path) -> None:
    config = tmp_path / "pantau.yaml"
    config.write_text("detector:\n  type: auto\n  model: net.onnx\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"type auto expects the network as a \.pt"):
        load_settings(config, {})
    config.write_text(
        "detector:\n  type: auto\n  model: net.pt\n  int8_model: net_int8\n", encoding="utf-8"
    )
    with pytest.raises(SettingsError, match="int8_model expects an exported folder"):
        load_settings(config, {})
    config.write_text(
        "detector:\n  type: auto\n  model: net.pt\n  candidates: [tflite]\n", encoding="utf-8"
    )
    with pytest.raises(SettingsError, match="candidates"):
        load_settings(config, {})


@pytest.mark.parametrize(
    "entry", ["not json", '{"KEY": {"name": "onnx", "trials": [{"speed": 1}]}}', '{"KEY": 7}']
)
def test_a_damaged_cache_entry_is_measured_again_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    model = tmp_path / "net.pt"
    model.write_bytes(b"weights")
    auto = AutoDetector(model=model, exports_dir=tmp_path, calibration_s=0.01)
    (tmp_path / "calibration.json").write_text(
        entry.replace("KEY", calibration.cache_key(auto, "x").replace('"', "")), encoding="utf-8"
    )
    monkeypatch.setattr(calibration, "concrete", lambda _auto, name, _cpu=None: name)
    fakes = {name: FakeBackend(name, 1.0, boxes(PERSON)) for name in auto.candidates}
    choice, _ = calibrate(
        auto, frames=[np.zeros((8, 8, 3), dtype=np.uint8)], cpu="x", load=fakes.__getitem__
    )
    assert not choice.cached and len(choice.trials) == len(auto.candidates)
