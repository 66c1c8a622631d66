"""`detector.type: auto` on the real shared weights: the backends are exported, timed and
compared on the calibration frames, the fastest that agrees with the fp32 reference runs, and
the next start on this machine takes the choice from the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors import calibration
from detectors.backends import DEFAULT_EXPORT_DIR, export_model, load_backend, quantize_onnx
from pantau.settings import AutoDetector, OnnxDetector, load_settings
from tests.conftest import OPENVINO_MODEL, PT_MODEL, REPO


def test_auto_chooses_a_backend_that_finds_what_the_reference_finds_and_remembers_it(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pantau.yaml"
    config.write_text(
        "detector:\n"
        "  type: auto\n"
        f"  model: {PT_MODEL}\n"
        f"  int8_model: {OPENVINO_MODEL}\n"
        "  imgsz: 640\n"
        "  calibration_s: 0.5\n"
        f"  exports_dir: {tmp_path / 'models'}\n",
        encoding="utf-8",
    )
    detector = load_settings(config, {}).detector
    assert isinstance(detector, AutoDetector)

    choice, backend = calibration.calibrate(detector)

    assert not choice.cached and choice.name in detector.candidates
    ran = {t.name: t for t in choice.trials if t.ms_per_frame is not None}
    # All three run at 640 (the shared int8 export is a 640 one), and all are the same network;
    # the int8 ONNX one only where the CPU has VNNI.
    expected = {"openvino-int8", "openvino", "onnx"}
    if calibration.has_vnni(choice.cpu):
        expected.add("onnx-int8")
    else:
        (skipped,) = (t for t in choice.trials if t.name == "onnx-int8")
        assert "no VNNI" in (skipped.error or "")
    assert set(ran) == expected, choice.summary()
    assert all(t.agreement is not None and t.agreement >= 0.9 for t in ran.values())
    fastest = min(ran.values(), key=lambda t: t.ms_per_frame or 0.0)
    assert choice.name == fastest.name
    person = cv2.imread(str(calibration.FRAMES_DIR / "person-at-table.jpg"))
    assert person is not None
    (found,) = backend.detect([np.asarray(person)])
    assert "person" in {backend.names[int(c)] for c in found.class_id}
    cached = json.loads((tmp_path / "models" / "calibration.json").read_text(encoding="utf-8"))
    (entry,) = cached.values()
    assert entry["name"] == choice.name and len(entry["trials"]) == 4

    # The next start reads the choice: nothing is timed, only the chosen backend is loaded.
    monkeypatch.setattr(calibration, "_time", lambda *a: pytest.fail("timed again"))
    again = load_backend(detector)
    assert again.name == backend.name


def test_an_int8_export_of_another_size_is_named_and_left_out(
    shared_data: Path, tmp_path: Path
) -> None:
    detector = AutoDetector(
        model=PT_MODEL,
        int8_model=OPENVINO_MODEL,
        imgsz=320,
        calibration_s=0.3,
        exports_dir=tmp_path,
    )
    choice, _ = calibration.calibrate(detector)
    int8 = next(t for t in choice.trials if t.name == "openvino-int8")
    assert int8.ms_per_frame is None and "exported for input [640, 640]" in (int8.error or "")
    assert choice.name in {"openvino", "onnx", "onnx-int8"}


def test_the_int8_onnx_candidate_is_quantized_once_and_finds_what_fp32_finds(
    shared_data: Path, tmp_path: Path
) -> None:
    """Run where the CPU has VNNI only; the quantization itself is checked everywhere."""
    fp32 = export_model(PT_MODEL, "onnx", 320, REPO / DEFAULT_EXPORT_DIR)
    model = tmp_path / fp32.name
    shutil.copyfile(fp32, model)
    frames = calibration.calibration_frames()
    int8 = quantize_onnx(model, frames, 320)
    assert int8.name.endswith("-int8.onnx") and int8.stat().st_size < 0.5 * model.stat().st_size
    reference = load_backend(OnnxDetector(model=model, imgsz=320)).detect(frames)
    quantized = load_backend(OnnxDetector(model=int8, imgsz=320)).detect(frames)
    assert calibration.agreement(reference, quantized) >= 0.9
    made = int8.stat().st_mtime_ns
    assert quantize_onnx(model, frames, 320) == int8 and int8.stat().st_mtime_ns == made
