"""The dumping detector: the network and its classes, tracking, the detect stage, the
dumping logic, its evidence and the camera-view check."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from pantau.settings.base import ConfigPath, Section, _number_from_text, _section

# COCO: person, bicycle, car, motorcycle, bus, truck; backpack, handbag, suitcase, bottle.
_TRACKED_CLASSES = (0, 1, 2, 3, 5, 7, 24, 26, 28, 39)


class TrackerSettings(Section):
    """ByteTrack per camera: the same object keeps its track id from frame to frame."""

    enabled: bool = Field(True, description="off: detections carry no track ids")
    classes: tuple[int, ...] = Field(
        _TRACKED_CLASSES, description="class ids that get track ids (people, vehicles, carriables)"
    )
    # Without motion the camera still publishes a frame every ingest.motion.static_interval_s
    # (1-2 s): 5 s lets a standing person survive a missed detection between such frames.
    buffer_s: float = Field(
        5.0,
        gt=0,
        description="seconds of frame time a lost track waits to be found again; "
        "after that the object gets a new id",
    )
    high_confidence: float = Field(
        0.25, gt=0, lt=1, description="boxes at least this confident are matched first"
    )
    low_confidence: float = Field(
        0.1, gt=0, lt=1, description="boxes between this and high_confidence only extend tracks"
    )
    new_track_confidence: float = Field(
        0.25, gt=0, lt=1, description="an unmatched box at least this confident starts a track"
    )
    match_iou: float = Field(
        0.2, gt=0, lt=1, description="least overlap of a track's predicted box and a detection"
    )

    @model_validator(mode="after")
    def verify_confidence_order(self) -> Self:
        if self.low_confidence >= self.high_confidence:
            raise ValueError(
                f"tracker.low_confidence ({self.low_confidence}) must be below "
                f"tracker.high_confidence ({self.high_confidence})"
            )
        return self


# What the dumping logic looks at, by COCO name, with the least confidence a box needs.
# Vehicles stand higher: parked-car false positives (shadows, stalls) would be taken for owners.
# Carriables lower: a bag on the ground is small and often half hidden, and a missed one is a
# missed event, while a false one only raises the confidence of an object already static.
_KEPT_CLASSES: dict[str, float] = {
    "person": 0.35,
    "bicycle": 0.4,
    "car": 0.4,
    "motorcycle": 0.4,
    "bus": 0.4,
    "truck": 0.4,
    "backpack": 0.25,
    "handbag": 0.25,
    "suitcase": 0.25,
    "bottle": 0.25,
}

ClassName = Annotated[str, Field(min_length=1)]
ClassThreshold = Annotated[float, Field(gt=0, lt=1)]


class _DetectorBase(Section):
    model: ConfigPath = Field(description="local model path; weights are never downloaded")
    imgsz: Annotated[Literal[320, 640], BeforeValidator(_number_from_text)] = Field(
        640, description="network input size"
    )
    confidence: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="the network's own floor: boxes below it never leave the network, "
        "whatever `classes` says",
    )
    iou: float = Field(0.45, gt=0, lt=1, description="NMS: overlap above which boxes merge")
    device: str = Field("cpu", description="cpu, cuda:0, ...")
    max_batch: int = Field(4, ge=1, le=64, description="frames per inference call")
    classes: dict[ClassName, ClassThreshold] = Field(
        default_factory=lambda: dict(_KEPT_CLASSES),
        min_length=1,
        description="class name -> least confidence: only these classes are tracked, "
        "stored and used by the dumping logic; every other box is dropped before tracking "
        "(the trash-bag class of dumping.trash_bag_class is kept as well). A name the model "
        "does not know stops the detector at start-up",
    )
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)

    @model_validator(mode="after")
    def verify_class_thresholds(self) -> Self:
        """A threshold written below the network's floor would never apply: say so rather
        than let the file promise boxes that never come (the defaults are left alone)."""
        if "classes" not in self.model_fields_set:
            return self
        below = [f"{n} ({v:g})" for n, v in self.classes.items() if v < self.confidence]
        if below:
            raise ValueError(
                f"detector.classes: {', '.join(below)} {'is' if len(below) == 1 else 'are'} "
                f"below detector.confidence ({self.confidence:g}), which the network applies "
                "first; lower detector.confidence or raise the threshold"
            )
        return self

    @field_validator("classes", mode="before")
    @classmethod
    def verify_classes_mapping(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            raise ValueError(
                "expected class name -> least confidence (e.g. person: 0.35), got a list"
            )
        return value


class UltralyticsDetector(_DetectorBase):
    """A PyTorch `.pt` checkpoint through ultralytics (a folder ultralytics exported loads too,
    which configs written before `type: openvino` existed rely on)."""

    type: Literal["ultralytics"] = Field("ultralytics", description="detector backend")


class OpenVinoDetector(_DetectorBase):
    """An `*_openvino_model` folder exported by ultralytics (e.g. the shared int8 model), run
    on the OpenVINO runtime. Exports are static: `imgsz` must be the size it was exported at.
    `device`: cpu, or intel:gpu / intel:npu."""

    type: Literal["openvino"] = Field("openvino", description="detector backend")

    @field_validator("model")
    @classmethod
    def verify_folder(cls, value: Path) -> Path:
        # Ultralytics tells an OpenVINO export from other formats by this folder suffix.
        if not value.name.endswith("_openvino_model"):
            raise ValueError(
                "type openvino expects an exported folder named *_openvino_model, got "
                f"{value.name}; a .pt is type ultralytics, an .onnx is type onnx"
            )
        return value


class OnnxDetector(_DetectorBase):
    """An `.onnx` export run with ONNX Runtime directly (letterbox, decoding and NMS are ours);
    make one from a `.pt` with `pantau detector-export --format onnx --imgsz N`."""

    type: Literal["onnx"] = Field("onnx", description="detector backend")

    @field_validator("model")
    @classmethod
    def verify_onnx_file(cls, value: Path) -> Path:
        if value.suffix != ".onnx":
            raise ValueError(
                f"type onnx expects an .onnx file, got {value.name}; export one from a .pt "
                "with `pantau detector-export --format onnx`"
            )
        return value


# What `type: auto` may choose from: OpenVINO on fp32 and int8 weights, ONNX Runtime on fp32.
AutoCandidate = Literal["openvino-int8", "openvino", "onnx", "onnx-int8"]


class AutoDetector(_DetectorBase):
    """The fastest backend for the CPU at hand, chosen at start-up: each candidate is timed on
    a few real frames at `imgsz` and `max_batch`, and the fastest whose detections match the
    fp32 ONNX reference (boxes of the same class at IoU >= 0.9) is used. The choice is cached
    per model, size, batch and CPU in `exports_dir`, so it is made once per machine."""

    type: Literal["auto"] = Field("auto", description="detector backend")
    int8_model: ConfigPath | None = Field(
        None,
        description="an int8 OpenVINO export (*_openvino_model) of the same network; a "
        "candidate when it was exported at imgsz",
    )
    candidates: tuple[AutoCandidate, ...] = Field(
        ("openvino-int8", "openvino", "onnx", "onnx-int8"),
        min_length=1,
        description="backends to time; fp32 exports are made from `model` on first use, the "
        "int8 ONNX one from the fp32 export where the CPU has VNNI",
    )
    exports_dir: ConfigPath = Field(
        Path(".pantau/models"),
        description="where fp32 exports and the calibration cache (calibration.json) are kept",
    )
    calibration_s: float = Field(
        1.5, gt=0, le=60, description="seconds of timing per candidate (at least one pass)"
    )
    min_agreement: float = Field(
        0.9,
        gt=0,
        le=1,
        description="least share of the reference's confident boxes a candidate must match "
        "(and of its own that the reference must match)",
    )

    @field_validator("model")
    @classmethod
    def verify_checkpoint(cls, value: Path) -> Path:
        if value.suffix != ".pt":
            raise ValueError(
                f"type auto expects the network as a .pt checkpoint, got {value.name}; the "
                "fp32 exports are made from it (an int8 OpenVINO export goes in int8_model)"
            )
        return value

    @field_validator("int8_model")
    @classmethod
    def verify_int8_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.name.endswith("_openvino_model"):
            raise ValueError(
                f"detector.int8_model expects an exported folder named *_openvino_model, got "
                f"{value.name}"
            )
        return value


_DETECTOR_TYPES: dict[str, type[_DetectorBase]] = {
    "ultralytics": UltralyticsDetector,
    "openvino": OpenVinoDetector,
    "onnx": OnnxDetector,
    "auto": AutoDetector,
}


def _pick_detector(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Dispatch on `type` ourselves rather than with pydantic's discriminator: errors then read
    `detector.imgsz` (no tag in the path), and configs without `type` stay ultralytics."""
    if not isinstance(value, Mapping):
        return handler(value)
    kind = value.get("type", "ultralytics")
    model = _DETECTOR_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(
            f"unknown detector type {kind!r}; expected one of: {', '.join(_DETECTOR_TYPES)}"
        )
    return model.model_validate(value, context=info.context)


DetectorSettings = Annotated[
    UltralyticsDetector | OpenVinoDetector | OnnxDetector | AutoDetector,
    WrapValidator(_pick_detector),
]


class RegionSettings(Section):
    """Region-based detection: the network looks at square crops of the frame at its own
    resolution (`detector.imgsz` pixels a side) around what moved since the camera's
    previous frame and around the objects found lately, batched across cameras. The whole
    frame, scaled to `detector.imgsz`, is added when the crops would cover most of it or an
    object is larger than a crop; on a camera's first frame and on the periodic check it is
    looked at scaled and in tiles at its own resolution. Small, far objects keep the detail
    of a full-resolution pass at the cost of a few small ones."""

    enabled: bool = Field(False, description="detect on crops around motion and followed objects")
    full_every_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="each camera's whole frame is detected at least this often, for what "
        "appeared without moving",
    )
    max_cover: float = Field(
        0.5,
        gt=0,
        le=1,
        description="crops that would cover more than this share of the frame's area are "
        "replaced by one whole-frame pass",
    )
    motion_threshold: int = Field(
        18, ge=1, le=255, description="grey-level change that counts a pixel as moved"
    )
    min_motion_px: int = Field(
        48,
        ge=1,
        description="smallest moved area worth a crop, in pixels of the frame (smaller "
        "changes are noise)",
    )
    margin_px: int = Field(
        24,
        ge=0,
        le=256,
        description="context kept around each moved area and object, in pixels of the frame",
    )


class DetectSettings(Section):
    group_id: str = Field("pantau-detect", description="Kafka consumer group of the detectors")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="detector processes in the group, each with its cameras' partitions (one "
        "process keeps about 1.3 cores busy: its Python half runs on one)",
    )
    snapshot_dir: ConfigPath | None = Field(
        None, description="where the latest annotated frame per camera is written (PNG)"
    )
    snapshot_interval_s: float = Field(
        10.0, gt=0, description="at most one snapshot per camera per (a PNG costs about 8 ms)"
    )
    state_interval_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="each camera's detector state (background, objects, open cases) is "
        "written to detect.state.v1 at least this often, and after every frame batch that "
        "moved one of its events on; a restarted detector resumes from the latest",
    )
    max_frame_age_s: float = Field(
        3.0,
        ge=0,
        description="frames captured longer ago are skipped, not queued, when the detector "
        "falls behind (0: never skip)",
    )
    regions: RegionSettings = _section()
    # Read from the JPEG header before decoding: a small JPEG may claim a huge picture, and
    # decoding it would allocate width x height x 3 bytes (8000x8000: 192 MB).
    max_frame_width: int = Field(
        4096,
        gt=0,
        le=65_535,
        description="wider frames are dead letters, refused before their JPEG is decoded",
    )
    max_frame_height: int = Field(
        4096,
        gt=0,
        le=65_535,
        description="taller frames are dead letters, refused before their JPEG is decoded",
    )


class EvidenceSettings(Section):
    """The evidence pack of each dumping event: stills, owner crop and clip."""

    dir: ConfigPath = Field(
        Path("../.pantau/evidence"),
        validate_default=True,
        description="evidence store root (a filesystem path)",
    )
    pre_roll_s: float = Field(20.0, ge=0, description="the clip starts this long before the drop")
    post_roll_s: float = Field(
        5.0, ge=0, description="and ends this long after the alert (the clip follows the alert)"
    )
    blur_bystanders: bool = Field(True, description="pixelate people other than the owner")
    keep_originals: bool = Field(False, description="also keep unblurred copies (restricted)")
    jpeg_quality: int = Field(85, ge=30, le=100)
    buffer_s: float = Field(
        120.0, gt=0, description="frames kept per camera: pre-roll + dwell + confirmation"
    )


# Seconds from a drop until the dumping logic starts its dwell: the static-object model
# confirms an object after a few seconds still, and the owner usually stands by it a little.
_CONFIRM_AND_LEAVE_S = 20.0


class ViewSettings(Section):
    """The camera-view check: a moved, covered or blurred camera raises a camera-health alarm
    instead of dumping alarms, and the scene models relearn the new view quietly."""

    enabled: bool = Field(True, description="watch every camera's view in `pantau detect`")
    relearn_s: float = Field(
        30.0, gt=0, le=600, description="after a move, seconds the scene models relearn quietly"
    )
    moved_after_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="seconds the view must stay changed to count as moved (a bus passing in "
        "front of the lens only holds the frames)",
    )
    tamper_after_s: float = Field(
        2.0, ge=0, le=60, description="seconds covered or blurred before the tamper alarm"
    )
    moved_frac: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="share of the scene's outline (strong edges) no longer where it was, above "
        "which the view has moved",
    )
    uniform_spread: float = Field(
        6.0,
        ge=0,
        lt=128,
        description="grey-level standard deviation (0-255) below which the picture is covered",
    )
    blur_ratio: float = Field(
        0.4,
        ge=0,
        lt=1,
        description="detail below this share of the camera's usual detail: the picture is "
        "blurred (out of focus, smeared lens)",
    )


class DumpingSettings(Section):
    """Thresholds of the dumping logic (distances in multiples of the owner's box size)."""

    enabled: bool = Field(True, description="run the dumping logic in `pantau detect`")
    default_dwell_s: float = Field(
        30.0, gt=0, description="dwell of the whole frame when a camera has no watch zone"
    )
    attend_ratio: float = Field(0.75, gt=0, description="owner this near attends the object")
    associate_ratio: float = Field(1.5, gt=0, description="owner search radius at appearance")
    max_age_s: float = Field(3600.0, gt=0, description="an uncleaned object expires after this")
    trash_bag_class: int | None = Field(
        None, ge=0, description="class id of a trash-bag class, when the model has one"
    )
    evidence: EvidenceSettings = _section()
    view: ViewSettings = _section()
