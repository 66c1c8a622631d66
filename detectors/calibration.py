"""`detector.type: auto`: time the backends this CPU can run, keep the fastest that detects
what the fp32 reference detects.

The same network runs at very different speeds on different CPUs of one kind of machine: the
int8 OpenVINO export wins where the CPU has VNNI, ONNX Runtime can beat OpenVINO where it has
AVX2 only. A deployment should not have to guess. At start-up each candidate is loaded and
timed on the calibration frames (detectors/data/calibration) at the configured size and
batch; its detections are compared with those of the fp32 ONNX export (the checkpoint's own
weights, run by ONNX Runtime): every confident box of one must have a box of the same class at
IoU >= 0.9 in the other, for at least `min_agreement` of them. The fastest candidate that
agrees is chosen. The choice and the times go to the log and to `calibration.json` in the
exports folder, keyed by the model's digest, the size, the batch and the CPU (model name and
the instruction sets that decide the race), so the next start on this machine reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors.backends import Backend, DetectorError, export_model, load_backend, quantize_onnx
from detectors.detections import Detections
from pantau.runtime import alive
from pantau.settings import AutoDetector, OnnxDetector, OpenVinoDetector

log = logging.getLogger(__name__)

FRAMES_DIR = Path(__file__).resolve().parent / "data" / "calibration"
CACHE_FILE = "calibration.json"
# Boxes at least this confident must be found by both backends; below it, int8 and fp32 may
# differ without it mattering (the dumping logic's thresholds start at 0.25, and a box near a
# threshold flickers between frames anyway).
CONFIDENT = 0.5
MATCH_IOU = 0.9
# The instruction sets that decide which backend is fastest.
_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class Trial:
    """One candidate's showing: milliseconds of wall time per frame over whole batches (None
    when it could not run), and its agreement with the reference."""

    name: str
    ms_per_frame: float | None
    agreement: float | None
    error: str | None = None


@dataclass(frozen=True)
class Choice:
    name: str
    trials: tuple[Trial, ...]
    cpu: str
    cached: bool

    def summary(self) -> str:
        parts = []
        for t in self.trials:
            if t.ms_per_frame is None and (t.error or "").startswith("not run"):
                parts.append(f"{t.name} {t.error}")
            elif t.ms_per_frame is None:
                parts.append(f"{t.name} failed ({t.error})")
            else:
                parts.append(f"{t.name} {t.ms_per_frame:.1f} ms/frame, agreement {t.agreement:.2f}")
        return "; ".join(parts)


def cpu_signature() -> str:
    """The CPU's model name, the decisive instruction sets it has, and the core count."""
    name, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in _FLAGS if f in flags]
    return f"{name} [{' '.join(have) or 'no avx2'}] x{os.cpu_count() or 1}"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def _found(box: np.ndarray, cls: int, other: Detections) -> bool:
    return any(
        int(other.class_id[j]) == cls and _iou(box, other.xyxy[j]) >= MATCH_IOU
        for j in range(len(other))
    )


def agreement(reference: Sequence[Detections], candidate: Sequence[Detections]) -> float:
    """Share of the confident boxes of either side (per frame) that the other side has too:
    same class, IoU >= MATCH_IOU, at any confidence. 1.0 when neither has a confident box."""
    matched = total = 0
    for ref, cand in zip(reference, candidate, strict=True):
        for one, other in ((ref, cand), (cand, ref)):
            for i in range(len(one)):
                if float(one.confidence[i]) < CONFIDENT:
                    continue
                total += 1
                matched += _found(one.xyxy[i], int(one.class_id[i]), other)
    return matched / total if total else 1.0


def pick(trials: Sequence[Trial], min_agreement: float) -> Trial | None:
    """The fastest trial that ran and agrees with the reference; None when none does."""
    fit = [
        t
        for t in trials
        if t.ms_per_frame is not None and t.agreement is not None and t.agreement >= min_agreement
    ]
    return min(fit, key=lambda t: t.ms_per_frame or 0.0) if fit else None


def calibration_frames(folder: Path = FRAMES_DIR) -> list[np.ndarray]:
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))]
    if not frames or any(f is None for f in frames):
        raise DetectorError(f"detector calibration: no readable frames in {folder}")
    return [np.asarray(f) for f in frames]


def concrete(
    auto: AutoDetector, name: str, cpu: str | None = None
) -> OpenVinoDetector | OnnxDetector:
    """The settings of one candidate: fp32 exports are made from the checkpoint (once; they are
    reused by name), the int8 OpenVINO one is the configured folder, the int8 ONNX one is
    quantized from the fp32 export on the calibration frames (only where `cpu` has VNNI)."""
    common = auto.model_dump(
        exclude={
            "type", "model", "int8_model", "candidates", "exports_dir", "calibration_s",
            "min_agreement",
        }
    )  # fmt: skip
    if name == "onnx":
        model = export_model(auto.model, "onnx", auto.imgsz, auto.exports_dir)
        return OnnxDetector.model_validate({**common, "model": model})
    if name == "openvino":
        model = export_model(auto.model, "openvino", auto.imgsz, auto.exports_dir)
        return OpenVinoDetector.model_validate({**common, "model": model})
    if name == "openvino-int8":
        if auto.int8_model is None:
            raise DetectorError("no detector.int8_model configured")
        return OpenVinoDetector.model_validate({**common, "model": auto.int8_model})
    if name == "onnx-int8":
        if not has_vnni(cpu):
            raise DetectorError(
                "not run: this CPU has no VNNI (avx512_vnni or avx_vnni), without which int8 "
                "in ONNX Runtime is slower than fp32"
            )
        fp32 = export_model(auto.model, "onnx", auto.imgsz, auto.exports_dir)
        model = quantize_onnx(fp32, calibration_frames, auto.imgsz)
        return OnnxDetector.model_validate({**common, "model": model})
    raise DetectorError(f"unknown candidate {name!r}")


def has_vnni(cpu: str | None) -> bool:
    """Whether the CPU (a `cpu_signature`) has the int8 dot-product instructions."""
    flags = (cpu or cpu_signature()).partition("[")[2].partition("]")[0].split()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(auto: AutoDetector, cpu: str) -> str:
    int8 = _digest(auto.int8_model) if auto.int8_model and auto.int8_model.exists() else "-"
    parts = [
        _digest(auto.model), int8, str(auto.imgsz), str(auto.max_batch), auto.device,
        ",".join(auto.candidates), f"{auto.min_agreement:g}", cpu,
    ]  # fmt: skip
    return " | ".join(parts)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _trials(hit: object) -> tuple[Trial, ...] | None:
    """The trials of a cache entry; None when it is not one this code wrote (an entry edited
    by hand, or by another release, is measured again rather than trusted)."""
    if not isinstance(hit, dict) or not isinstance(hit.get("trials"), list):
        return None
    try:
        return tuple(Trial(**t) for t in hit["trials"])
    except TypeError:
        return None


def _time(backend: Backend, frames: Sequence[np.ndarray], batch: int, budget_s: float) -> float:
    """Wall milliseconds per frame over whole passes of the frames in batches of `batch`,
    after one pass to warm up; passes repeat until `budget_s` is spent (at least one)."""
    batches = [list(frames[i : i + batch]) for i in range(0, len(frames), batch)]
    for b in batches:
        backend.detect(b)
    passes, started = 0, time.perf_counter()
    while True:
        for b in batches:
            backend.detect(b)
        passes += 1
        # Calibrating is start-up work, not a stuck loop: tell the supervisor.
        alive()
        spent = time.perf_counter() - started
        if spent >= budget_s:
            return spent * 1000.0 / (passes * len(frames))


def calibrate(
    auto: AutoDetector,
    *,
    frames: Sequence[np.ndarray] | None = None,
    cpu: str | None = None,
    load: Callable[[Any], Backend] = load_backend,
    use_cache: bool = True,
) -> tuple[Choice, Backend]:
    """Choose the backend (from the cache when this machine chose before) and return it
    loaded."""
    cpu = cpu or cpu_signature()
    cache_path = auto.exports_dir / CACHE_FILE
    key = cache_key(auto, cpu)
    if use_cache:
        hit = _read_cache(cache_path).get(key)
        before = _trials(hit)
        if before is not None and isinstance(hit, dict) and hit.get("name") in auto.candidates:
            choice = Choice(str(hit["name"]), before, cpu, cached=True)
            log.info("detector: %s, as calibrated on this machine before (%s)", choice.name, cpu)
            return choice, load(concrete(auto, choice.name, cpu))
    frames = list(frames) if frames is not None else calibration_frames()
    reference_backend = load(concrete(auto, "onnx"))
    reference = reference_backend.detect(frames)
    trials: list[Trial] = []
    loaded: dict[str, Backend] = {"onnx": reference_backend}
    for name in auto.candidates:
        alive()
        try:
            backend = loaded.get(name) or load(concrete(auto, name, cpu))
            loaded[name] = backend
            found = [d for i in range(0, len(frames), auto.max_batch)
                     for d in backend.detect(list(frames[i : i + auto.max_batch]))]  # fmt: skip
            ms = _time(backend, frames, auto.max_batch, auto.calibration_s)
            trials.append(Trial(name, ms, agreement(reference, found)))
        except DetectorError as exc:
            trials.append(Trial(name, None, None, str(exc)))
    best = pick(trials, auto.min_agreement)
    if best is None:
        raise DetectorError(
            "detector calibration: no candidate agrees with the fp32 reference on the "
            f"calibration frames: {Choice('-', tuple(trials), cpu, False).summary()}"
        )
    choice = Choice(best.name, tuple(trials), cpu, cached=False)
    log.info("detector: chose %s on %s (%s)", choice.name, cpu, choice.summary())
    cache = _read_cache(cache_path)
    cache[key] = {"name": choice.name, "trials": [asdict(t) for t in trials]}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(cache, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, cache_path)
    return choice, loaded[choice.name]
