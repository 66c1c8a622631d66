"""Detector backends, chosen by `detector.type`. Only this module touches ultralytics,
openvino and onnxruntime.

- `ultralytics`: a `.pt` checkpoint through ultralytics (PyTorch).
- `openvino`: an OpenVINO folder exported by ultralytics, run with the OpenVINO runtime
  directly, several frames at once (one inference stream per core).
- `onnx`: an `.onnx` export run with ONNX Runtime directly.

For `openvino` and `onnx`, letterboxing, decoding of the YOLO11 output and NMS are ours (numpy
and cv2): no torch at run time, and none of ultralytics' per-call overhead, which cost more
CPU than the network itself at 320.

The model always comes from a local path in the settings: weights are never downloaded at
run time (the machines that run Pantau often have no route to the internet).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from detectors.detections import Detections, UnknownClassError, class_thresholds, nms
from pantau.settings import (
    AutoDetector,
    DetectorSettings,
    OnnxDetector,
    OpenVinoDetector,
    UltralyticsDetector,
)

log = logging.getLogger(__name__)

# Where `pantau detector-export` caches exports unless told otherwise (gitignored).
DEFAULT_EXPORT_DIR = Path(".pantau/models")
# What ultralytics pads letterboxed images with; the exported network was trained on it.
_PAD_VALUE = 114
# Ultralytics' own bounds: boxes considered per image before and kept after NMS.
_MAX_CANDIDATES = 30_000
_MAX_DETECTIONS = 300


class DetectorError(RuntimeError):
    pass


class Backend(Protocol):
    name: str
    names: Mapping[int, str]

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        """Boxes in each image's own pixels. Without `scaleup` an image smaller than the
        network's input is padded, not enlarged (crops keep the frame's resolution)."""
        ...


def offline_ultralytics() -> Any:
    """Import ultralytics so that it neither probes the internet nor pip-installs a missing
    extra: a missing package must be an ImportError we report, not a silent install."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "0")
    import ultralytics
    from ultralytics.utils import checks

    # The flag is read once, when ultralytics is first imported; an earlier import elsewhere
    # in this process may have seen another value.
    checks.AUTOINSTALL = False
    return ultralytics


def _require(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise DetectorError(
            f"{what} needs the Python package {module!r}, which is not installed "
            "(install the project with constraints.txt; nothing is installed at run time)"
        ) from exc


# --------------------------------------------------------------------------- ultralytics


class UltralyticsBackend:
    """YOLO through ultralytics: a `.pt` checkpoint (or any model ultralytics loads)."""

    def __init__(self, config: UltralyticsDetector) -> None:
        _require_model(config)
        self.config = config
        self.name = config.model.name
        ultralytics = offline_ultralytics()
        started = time.monotonic()
        self._model = ultralytics.YOLO(str(config.model), task="detect")
        self.names: Mapping[int, str] = dict(self._model.names)
        # The first inference compiles kernels and allocates; do it before real frames arrive.
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), dtype=np.uint8)])
        log.info(
            "detector %s (%s) ready in %.1f s (imgsz %d, device %s)",
            self.name,
            config.type,
            time.monotonic() - started,
            config.imgsz,
            config.device,
        )

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        if not images:
            return []
        if not scaleup:
            # ultralytics enlarges what is smaller than imgsz: a crop goes in padded to it,
            # at its own scale (the padding sits right and below, so boxes need no shift).
            images = [_padded(image, self.config.imgsz) for image in images]
        results = self._model.predict(
            list(images),
            imgsz=self.config.imgsz,
            conf=self.config.confidence,
            iou=self.config.iou,
            device=self.config.device,
            verbose=False,
        )
        return [Detections.from_ultralytics(r) for r in results]


def _padded(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height >= size and width >= size:
        return image
    return cv2.copyMakeBorder(
        image,
        0,
        max(0, size - height),
        0,
        max(0, size - width),
        cv2.BORDER_CONSTANT,
        value=(_PAD_VALUE,) * 3,
    )


def _require_model(config: DetectorSettings, hint: str = "check detector.model") -> None:
    if not config.model.exists():
        raise DetectorError(
            f"detector model {config.model} does not exist "
            f"(weights are never downloaded at run time; {hint})"
        )


# --------------------------------------------------------------------------- OpenVINO


class OpenVinoBackend:
    """An ultralytics OpenVINO export (the shared int8 one, or `pantau detector-export
    --format openvino`) on the OpenVINO runtime.

    Compiled for throughput: one inference stream per core, each single-threaded, and the
    frames of a batch go to the streams side by side. A frame then costs the least CPU (at
    640 int8 here: 17 ms on one thread against 20 ms spread over two), which is what many
    cameras on a small machine need; a lone frame waits on one core.
    """

    def __init__(self, config: OpenVinoDetector) -> None:
        _require_model(
            config,
            f"make one with `pantau detector-export --format openvino --imgsz {config.imgsz}`",
        )
        xml, metadata = _openvino_folder(config)
        _require("openvino", f"detector model {config.model}")
        import openvino as ov  # type: ignore[import-untyped]

        self.config = config
        self.name = config.model.name
        started = time.monotonic()
        core = ov.Core()
        model = core.read_model(str(xml))
        shape = model.input(0).get_partial_shape()
        if shape.is_dynamic or tuple(d.get_length() for d in shape)[2:] != (
            config.imgsz,
            config.imgsz,
        ):
            raise DetectorError(
                f"detector model {config.model}: expected a static 1x3x{config.imgsz}x"
                f"{config.imgsz} input (detector.imgsz), got {shape}"
            )
        # The input conversion (BGR HWC bytes -> RGB NCHW 0..1) runs inside the network, in
        # OpenVINO's vectorised code rather than in numpy: about 1 ms less per frame at 320.
        steps = ov.preprocess.PrePostProcessor(model)
        steps.input().tensor().set_element_type(ov.Type.u8).set_layout(
            ov.Layout("NHWC")
        ).set_color_format(ov.preprocess.ColorFormat.BGR)
        steps.input().model().set_layout(ov.Layout("NCHW"))
        steps.input().preprocess().convert_element_type(ov.Type.f32).convert_color(
            ov.preprocess.ColorFormat.RGB
        ).scale(255.0)
        model = steps.build()
        device = _openvino_device(config.device, config.model)
        try:
            compiled = core.compile_model(model, device, {"PERFORMANCE_HINT": "THROUGHPUT"})
        except RuntimeError as exc:
            raise DetectorError(f"detector model {config.model}: OpenVINO: {exc}") from exc
        self._requests = ov.AsyncInferQueue(
            compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        )
        self._outputs: dict[int, npt.NDArray[np.float32]] = {}
        self._requests.set_callback(self._finished)
        self.names: Mapping[int, str] = {
            int(k): str(v) for k, v in dict(metadata.get("names") or {}).items()
        }
        if not self.names:
            raise DetectorError(
                f"detector model {config.model}: no class names in its metadata.yaml"
            )
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), dtype=np.uint8)])
        log.info(
            "detector %s (openvino, %s, %d streams) ready in %.1f s (imgsz %d)",
            self.name,
            device,
            len(self._requests),
            time.monotonic() - started,
            config.imgsz,
        )

    def _finished(self, request: Any, index: int) -> None:
        # Runs on OpenVINO's thread; the request's buffer is reused by the next frame.
        self._outputs[index] = np.array(request.get_output_tensor(0).data[0], copy=True)

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        fits: list[Letterbox] = []
        self._outputs = {}
        for index, image in enumerate(images):
            fitted, fit = letterbox(image, self.config.imgsz, scaleup=scaleup)
            fits.append(fit)
            self._requests.start_async({0: fitted[None]}, index)
        self._requests.wait_all()
        results = []
        for index, (image, fit) in enumerate(zip(images, fits, strict=True)):
            height, width = image.shape[:2]
            results.append(
                decode_yolo(
                    self._outputs[index],
                    fit,
                    width,
                    height,
                    confidence=self.config.confidence,
                    iou=self.config.iou,
                )
            )
        return results


def _openvino_folder(config: OpenVinoDetector) -> tuple[Path, dict[str, Any]]:
    """The folder's one model and its metadata; a folder exported at another size than imgsz
    is refused, with the command that makes the right one.

    Exports are static (the shared int8 one is 1x3x640x640), so the size is the export's and
    imgsz must say the same. Reshaping is no way out: YOLO11's attention block was traced with
    fixed sizes.
    """
    folder = config.model
    xmls = sorted(folder.glob("*.xml")) if folder.is_dir() else []
    if len(xmls) != 1:
        raise DetectorError(
            f"detector model {folder}: expected an OpenVINO folder with one .xml model, "
            f"got {len(xmls)} .xml files"
        )
    metadata_path = folder / "metadata.yaml"
    metadata: dict[str, Any] = {}
    if metadata_path.exists():
        metadata = yaml.safe_load(metadata_path.read_text(encoding="utf-8")) or {}
    exported = metadata.get("imgsz")
    if exported not in ([config.imgsz, config.imgsz], config.imgsz, None):
        raise DetectorError(
            f"detector model {folder}: exported for input {exported}, detector.imgsz is "
            f"{config.imgsz}; a static export runs only at its own size (export one with "
            f"`pantau detector-export --format openvino --imgsz {config.imgsz}`)"
        )
    return xmls[0], metadata


def _openvino_device(device: str, model: Path) -> str:
    """detector.device in OpenVINO's words: cpu, or intel:gpu / intel:npu as ultralytics
    writes them."""
    if device == "cpu":
        return "CPU"
    if device.startswith("intel:") and device != "intel:":
        return device.partition(":")[2].upper()
    raise DetectorError(
        f"detector model {model}: device {device!r} is not one OpenVINO runs "
        "(expected cpu, intel:gpu or intel:npu)"
    )


# --------------------------------------------------------------------------- ONNX Runtime


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square network input: scale, then pad."""

    gain: float
    pad_x: float
    pad_y: float


def letterbox(
    image: np.ndarray, size: int, stride: int | None = None, *, scaleup: bool = True
) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """Scale to fit `size`x`size` keeping the aspect ratio and pad, centred, like ultralytics
    (so the network sees what it learnt on): to the full square, or with `stride` only to the
    next multiple of it (a 16:9 frame at 640 becomes 640x384, 40% less work). Without
    `scaleup` a smaller image keeps its own scale (a crop at the frame's resolution)."""
    height, width = image.shape[:2]
    gain = min(size / height, size / width)
    if not scaleup:
        gain = min(gain, 1.0)
    new_w, new_h = max(1, round(width * gain)), max(1, round(height * gain))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = size - new_w, size - new_h
    if stride is not None:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(
        image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(_PAD_VALUE,) * 3
    )
    return np.asarray(padded, dtype=np.uint8), Letterbox(gain, float(left), float(top))


def onnx_input(fitted: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """A letterboxed BGR HWC uint8 image as the export's input: RGB NCHW float 0..1."""
    planar = np.ascontiguousarray(fitted[None, :, :, ::-1].transpose(0, 3, 1, 2))
    return planar.astype(np.float32) / np.float32(255.0)


def decode_yolo(
    output: np.ndarray,
    fit: Letterbox,
    width: int,
    height: int,
    *,
    confidence: float,
    iou: float,
) -> Detections:
    """One image's raw YOLO11 head output, shape (4 + classes, anchors): rows are box centre
    x, y, width, height in network pixels, then one (already sigmoid) score per class.
    Returns boxes in the original image's pixels after class-aware NMS."""
    if output.ndim != 2 or output.shape[0] < 5:
        raise DetectorError(
            f"ONNX output: expected shape (4 + classes, anchors), got {output.shape}"
        )
    scores = output[4:]
    class_id = scores.argmax(axis=0)
    best = scores[class_id, np.arange(scores.shape[1])]
    keep = np.flatnonzero(best > confidence)
    if keep.size > _MAX_CANDIDATES:
        keep = keep[np.argsort(-best[keep])[:_MAX_CANDIDATES]]
    if keep.size == 0:
        return Detections.empty()
    cx, cy, w, h = output[0, keep], output[1, keep], output[2, keep], output[3, keep]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    conf = best[keep].astype(np.float32)
    classes = class_id[keep].astype(np.int64)
    # Class-aware in one pass: shifting each class far apart means boxes of different classes
    # never overlap (a person holding a bag keeps both boxes).
    offset = classes[:, None].astype(np.float32) * (4.0 * max(width, height, 1024))
    kept = nms(xyxy + offset, conf, iou)[:_MAX_DETECTIONS]
    xyxy, conf, classes = xyxy[kept], conf[kept], classes[kept]
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - fit.pad_x) / fit.gain).clip(0, width)
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - fit.pad_y) / fit.gain).clip(0, height)
    return Detections(xyxy=xyxy, confidence=conf, class_id=classes)


class OnnxBackend:
    """An ultralytics `.onnx` export on ONNX Runtime, pre- and post-processing in numpy."""

    def __init__(self, config: OnnxDetector) -> None:
        _require_model(
            config, f"make one with `pantau detector-export --format onnx --imgsz {config.imgsz}`"
        )
        _require("onnxruntime", f"detector model {config.model}")
        import onnxruntime as ort  # type: ignore[import-untyped]

        self.config = config
        self.name = config.model.name
        started = time.monotonic()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would otherwise spin for the next call, stealing cores from
        # ingest and the sink on the same small machine (measured: 130 -> 107 ms at 640).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(config.model), sess_options=options, providers=self._providers(ort)
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise DetectorError(f"detector model {config.model}: ONNX Runtime: {exc}") from exc
        model_input = self._session.get_inputs()[0]
        self._input_name = str(model_input.name)
        _, _, in_h, in_w = model_input.shape
        static = isinstance(in_h, int) and isinstance(in_w, int)
        if static and (in_h, in_w) != (config.imgsz, config.imgsz):
            raise DetectorError(
                f"detector model {config.model}: exported for {in_h}x{in_w} input, "
                f"detector.imgsz is {config.imgsz} (export one with "
                f"`pantau detector-export --format onnx --imgsz {config.imgsz}`)"
            )
        metadata = self._session.get_modelmeta().custom_metadata_map
        # A static export takes only its square; a dynamic one the smallest padded rectangle.
        self._stride = None if static else int(metadata.get("stride", 32))
        self.names: Mapping[int, str] = self._names(metadata.get("names"))
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), dtype=np.uint8)])
        log.info(
            "detector %s (onnx, %s) ready in %.1f s (imgsz %d)",
            self.name,
            self._session.get_providers()[0],
            time.monotonic() - started,
            config.imgsz,
        )

    def _providers(self, ort: Any) -> list[Any]:
        device = self.config.device
        if device == "cpu":
            return ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise DetectorError(
                    f"detector model {self.config.model}: device {device} needs ONNX Runtime's "
                    f"CUDA provider; this onnxruntime has {', '.join(available)}"
                )
            index = int(device.partition(":")[2] or 0)
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        raise DetectorError(
            f"detector model {self.config.model}: device {device!r} is not one ONNX Runtime "
            "runs here (expected cpu or cuda[:N])"
        )

    def _names(self, text: str | None) -> dict[int, str]:
        outputs = self._session.get_outputs()[0].shape
        classes = outputs[1] - 4 if isinstance(outputs[1], int) else 0
        if text is None:
            return {i: str(i) for i in range(classes)}
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise DetectorError(
                f"detector model {self.config.model}: class names in the metadata do not "
                f"parse (expected a dict literal, got {text[:60]!r})"
            ) from exc
        return {int(k): str(v) for k, v in dict(parsed).items()}

    def detect(self, images: Sequence[np.ndarray], *, scaleup: bool = True) -> list[Detections]:
        # One image per call: on a CPU batching buys little, and frames of different cameras
        # letterbox to different shapes.
        return [self._detect_one(image, scaleup) for image in images]

    def _detect_one(self, image: np.ndarray, scaleup: bool = True) -> Detections:
        fitted, fit = letterbox(image, self.config.imgsz, self._stride, scaleup=scaleup)
        tensor = onnx_input(fitted)
        output = self._session.run(None, {self._input_name: tensor})[0]
        height, width = image.shape[:2]
        return decode_yolo(
            np.asarray(output[0]),
            fit,
            width,
            height,
            confidence=self.config.confidence,
            iou=self.config.iou,
        )


# --------------------------------------------------------------------------- export


EXPORT_FORMATS = ("onnx", "openvino")


def export_model(
    checkpoint: Path,
    fmt: str,
    imgsz: int,
    out_dir: Path = DEFAULT_EXPORT_DIR,
    *,
    dynamic: bool | None = None,
) -> Path:
    """Export a `.pt` checkpoint for input `imgsz` (fp32) under `out_dir`, once: an `.onnx`
    file, or an `*_openvino_model` folder (static: OpenVINO runs those fastest).

    ONNX exports are dynamic (any batch, height and width) unless `dynamic=False`, so 16:9
    frames run on a padded rectangle rather than the whole square.

    The name carries the checkpoint's hash and the size, so a changed checkpoint is exported
    again and an existing export is reused. Runs locally with ultralytics and torch; a missing
    package (onnx, openvino) is an error, never an install.
    """
    if fmt not in EXPORT_FORMATS:
        raise DetectorError(f"export: expected a format of {EXPORT_FORMATS}, got {fmt!r}")
    if checkpoint.suffix != ".pt" or not checkpoint.is_file():
        raise DetectorError(f"{fmt} export: expected an existing .pt checkpoint, got {checkpoint}")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    dynamic = fmt == "onnx" if dynamic is None else dynamic
    stem = f"{checkpoint.stem}-{digest}-{imgsz}{'' if dynamic else '-static'}"
    # Ultralytics recognises an OpenVINO export by this folder suffix.
    target = out_dir / (f"{stem}.onnx" if fmt == "onnx" else f"{stem}_openvino_model")
    if target.exists():
        return target
    _require(fmt, f"{fmt} export of {checkpoint}")
    ultralytics = offline_ultralytics()
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as work:
        # Ultralytics writes the export beside its source, and the shared models are read-only.
        source = Path(work) / checkpoint.name
        shutil.copyfile(checkpoint, source)
        model = ultralytics.YOLO(str(source), task="detect")
        options: dict[str, Any] = (
            # onnxslim is one more package; ONNX Runtime's own graph optimiser does the job.
            {"simplify": False}
            if fmt == "onnx"
            # int8 would need nncf and a calibration set (one more download): fp32 it is.
            else {"int8": False}
        )
        written = Path(
            model.export(
                format=fmt,
                imgsz=imgsz,
                dynamic=dynamic,
                half=False,
                nms=False,
                device="cpu",
                verbose=False,
                **options,
            )
        )
        if not written.exists():
            raise DetectorError(f"{fmt} export of {checkpoint}: ultralytics wrote no {written}")
        os.replace(written, target)
    log.info(
        "exported %s for %s at %d to %s in %.1f s",
        checkpoint.name,
        fmt,
        imgsz,
        target,
        time.monotonic() - started,
    )
    return target


def quantize_onnx(
    model: Path,
    frames: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]],
    imgsz: int,
) -> Path:
    """An int8 copy of an fp32 ONNX export, beside it (made once; reused by name): weights
    int8 per channel, activations uint8, their ranges calibrated on `frames` (or what the
    callable gives, read only when the copy is made) letterboxed to `imgsz`. ONNX Runtime
    runs it faster than fp32 only where the CPU has VNNI."""
    target = model.with_name(f"{model.stem}-int8.onnx")
    if target.exists():
        return target
    _require("onnxruntime", f"int8 quantization of {model}")
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = str(ort.InferenceSession(str(model)).get_inputs()[0].name)
    # The detection head (the network's last module: its convolutions, and the decoding that
    # puts box pixels and class scores into one tensor) stays fp32. Quantized, the model
    # found a fifth fewer of the fp32 model's confident boxes at 640; with the head in fp32
    # it found them all but one in ten.
    graph = onnx.load(str(model)).graph
    modules = {
        int(n.name.split(".")[1].split("/")[0])
        for n in graph.node
        if n.name.startswith("/model.") and n.name.split(".")[1].split("/")[0].isdigit()
    }
    head = f"/model.{max(modules, default=-1)}/"
    keep_fp32 = [n.name for n in graph.node if n.name.startswith(head)]
    images = frames() if callable(frames) else frames
    tensors = [onnx_input(letterbox(image, imgsz)[0]) for image in images]

    class Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._left = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self._left, None)
            return None if tensor is None else {name: tensor}

    started = time.monotonic()
    partial = target.with_suffix(".onnx.partial")
    try:
        quantize_static(
            str(model),
            str(partial),
            Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_fp32,
        )
    except Exception as exc:  # onnxruntime's quantizer raises its own untyped errors
        partial.unlink(missing_ok=True)
        raise DetectorError(f"int8 quantization of {model.name}: {exc}") from exc
    os.replace(partial, target)
    log.info(
        "quantized %s to int8 (%d calibration frames) as %s in %.1f s",
        model.name,
        len(tensors),
        target.name,
        time.monotonic() - started,
    )
    return target


def load_backend(config: DetectorSettings) -> Backend:
    """The configured backend, loaded; a class in `detector.classes` that the model does not
    know is a DetectorError here, before any frame is read."""
    backend: Backend
    if isinstance(config, AutoDetector):
        # Each candidate went through this function; the class check is done.
        from detectors.calibration import calibrate

        return calibrate(config)[1]
    if isinstance(config, OnnxDetector):
        backend = OnnxBackend(config)
    elif isinstance(config, OpenVinoDetector):
        backend = OpenVinoBackend(config)
    elif isinstance(config, UltralyticsDetector):
        backend = UltralyticsBackend(config)
    else:
        raise DetectorError(f"unknown detector type {config.type!r}")
    try:
        class_thresholds(config.classes, backend.names)
    except UnknownClassError as exc:
        raise DetectorError(f"detector model {config.model}: {exc}") from exc
    return backend
