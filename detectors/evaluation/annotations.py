"""Annotation files of the evaluation harness: their schema, loading and checking.

An annotation file lists clips. Each clip names its video, the camera's zones (the same
shape as a camera's `zones` in the settings) and the dumping events a person saw in it:
when the object was put down (`drop_at`, seconds into the clip), how far off a detection may
be (`tolerance_s`) and optionally where it lies (a pixel box). A clip with `events: []` is a
negative: whatever the detector reports there is a false alarm. A clip may also expect the
camera's own health alarms (`view_changes`: the camera was turned, covered or blurred at
`at`), whether or not anything is dumped in it.

    clips:
      - name: bottles
        group: intel
        video: ${PANTAU_SHARED_DATA}/video/intel-sample-videos/bottle-detection.mp4
        camera:
          zones:
            - {id: table, kind: watch, polygon: [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]}
        dwell_s: 8
        events:
          - {drop_at: 23.0, tolerance_s: 3, where: [288, 108, 355, 314], note: "..."}
        view_changes:
          - {condition: moved, at: 25.0, tolerance_s: 10}

Video paths take `${VAR}` and `${VAR:-default}` with the same rules as the settings file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.zones import DEFAULT_DWELL_S, CameraZones, Zone
from pantau.settings import SourceId, ZoneSettings, expand_variables

Box = tuple[float, float, float, float]

SHARED_DATA_VAR = "PANTAU_SHARED_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# An annotator marks the moment an object touches the ground to within a second or two; a
# detector dates an object from when its pixels first changed, which is about as close.
DEFAULT_TOLERANCE_S = 5.0
# A camera calls itself moved or covered only once the change has lasted a few seconds (a
# person passing close to the lens is not a cover), so its alarm comes that much later.
DEFAULT_VIEW_TOLERANCE_S = 10.0

ViewConditionName = Literal["moved", "covered", "blurred"]


class AnnotationError(ValueError):
    """The annotation file is unusable; the message names the file and the clip."""


# --------------------------------------------------------------------------- file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventAnnotation(_Strict):
    """One object put down and left for at least the dwell time."""

    drop_at: float = Field(ge=0, description="seconds into the clip the object was put down")
    tolerance_s: float = Field(
        DEFAULT_TOLERANCE_S, gt=0, description="a detection's appearance may be this far off"
    )
    where: tuple[float, float, float, float] | None = Field(
        None, description="optional [x1, y1, x2, y2] in video pixels around the object"
    )
    note: str = Field("", description="what a person sees happen")

    @field_validator("where")
    @classmethod
    def verify_box(
        cls, where: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if where is not None and not (where[2] > where[0] >= 0 and where[3] > where[1] >= 0):
            raise ValueError("a box [x1, y1, x2, y2] in pixels with x2 > x1 and y2 > y1")
        return where


class ViewChangeAnnotation(_Strict):
    """The camera's picture stopped showing its view: a health alarm is expected."""

    condition: ViewConditionName = Field(
        description="moved (turned, bumped), covered (lens covered) or blurred"
    )
    at: float = Field(ge=0, description="seconds into the clip the change happened")
    tolerance_s: float = Field(
        DEFAULT_VIEW_TOLERANCE_S, gt=0, description="the alarm may come this far off"
    )
    note: str = Field("", description="what a person sees happen")


class CameraAnnotation(_Strict):
    id: SourceId | None = Field(None, description="camera id; the clip's name when left out")
    zones: tuple[ZoneSettings, ...] = Field(
        (), description="as in the settings; none: the whole frame is watched"
    )


class ClipAnnotation(_Strict):
    name: SourceId = Field(description="unique within the file")
    group: str = Field("", description="clips scored together (e.g. a scenario); default: name")
    video: str = Field(description="path relative to this file, ${VAR} and ${VAR:-default} allowed")
    camera: CameraAnnotation = Field(default_factory=CameraAnnotation)
    dwell_s: float | None = Field(None, gt=0, description="overrides every watch zone's dwell")
    events: tuple[EventAnnotation, ...] = Field(description="[] for a clip without dumping")
    view_changes: tuple[ViewChangeAnnotation, ...] = Field(
        (), description="the camera health alarms expected (turned, covered, blurred)"
    )
    note: str = ""


class AnnotationFile(_Strict):
    clips: tuple[ClipAnnotation, ...] = Field(min_length=1)


# --------------------------------------------------------------------------- loaded form


@dataclass(frozen=True)
class TruthEvent:
    drop_at: float
    tolerance_s: float = DEFAULT_TOLERANCE_S
    where: Box | None = None
    note: str = ""


@dataclass(frozen=True)
class TruthView:
    condition: str
    at: float
    tolerance_s: float = DEFAULT_VIEW_TOLERANCE_S
    note: str = ""


@dataclass(frozen=True)
class ClipSpec:
    """One annotated clip, resolved: what a runner needs to run the detector on it."""

    name: str
    video: Path
    events: tuple[TruthEvent, ...] = ()
    view_changes: tuple[TruthView, ...] = ()
    camera_id: str = ""
    zones: tuple[ZoneSettings, ...] = ()
    dwell_s: float | None = None
    group: str = ""
    note: str = ""

    @property
    def camera(self) -> str:
        return self.camera_id or self.name

    @property
    def set_name(self) -> str:
        return self.group or self.name

    def camera_zones(self) -> CameraZones:
        """The clip's zones for the detector, with the clip's dwell override applied."""
        zones = self.zones
        if self.dwell_s is not None:
            zones = tuple(
                z.model_copy(update={"dwell_s": self.dwell_s}) if z.kind == "watch" else z
                for z in zones
            )
        return CameraZones(
            camera_id=self.camera,
            zones=tuple(Zone.from_settings(z) for z in zones),
            default_dwell_s=self.dwell_s if self.dwell_s is not None else DEFAULT_DWELL_S,
        )


@dataclass(frozen=True)
class Annotations:
    path: Path | None
    clips: tuple[ClipSpec, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.clips]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise AnnotationError(
                f"annotations {self.path}: expected unique clip names, got {twice} more than once"
            )


def resolve_video(
    video: str, base_dir: Path, environ: Mapping[str, str], *, clip: str = "?"
) -> Path:
    """`${VAR}` / `${VAR:-default}` from `environ` as in the settings (a variable set to
    nothing is set; PANTAU_SHARED_DATA, when unset and without a default, falls back to the
    shared data folder beside the repository), then relative to the annotation file."""

    def unset(name: str) -> str:
        if name == SHARED_DATA_VAR:
            return str(DEFAULT_SHARED_DATA)
        raise AnnotationError(
            f"clip {clip!r}: video {video!r} refers to ${{{name}}}: expected it in the "
            f"environment or a default (${{{name}:-...}}), got neither"
        )

    path = Path(expand_variables(video, environ, unset)).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base_dir / path))


def _loc_text(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# pydantic words its messages "Input should be greater than 0"; ours read "expected ...".
_SHOULD = re.compile(r"^(?:Input|String|Tuple|List|Value|Dictionary) should (?:be |have )?")


def _format_errors(path: Path | None, raw: Any, exc: ValidationError) -> str:
    clips = raw.get("clips") if isinstance(raw, dict) else None
    errors = exc.errors()
    deeper = any(len(e["loc"]) > 1 for e in errors)
    lines = []
    for err in errors:
        loc = tuple(err["loc"])
        if loc == ("clips",) and err["type"] == "too_short" and deeper:
            # A tuple whose every item failed also reports itself as too short: noise.
            continue
        where = f"annotations {path}"
        if len(loc) >= 2 and loc[0] == "clips" and isinstance(loc[1], int):
            index = loc[1]
            item = clips[index] if isinstance(clips, list) and index < len(clips) else None
            name = item.get("name") if isinstance(item, dict) else None
            where += f": clip {name!r} (clips[{index}])" if name else f": clips[{index}]"
            loc = loc[2:]
        what = _loc_text(loc) or "(the clip itself)"
        message = _SHOULD.sub("", err["msg"].removeprefix("Value error, "))
        got = _short(err.get("input"))
        if err["type"] == "missing":
            lines.append(f"{where}: {what}: expected a value, got none")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: {what}: expected no such key, got {got}")
        elif ", got " in message:
            # A validator of ours or of the settings that already says what it got.
            lines.append(f"{where}: {what}: {message}")
        else:
            lines.append(f"{where}: {what}: expected {message}, got {got}")
    return "\n".join(lines)


def annotations_from_mapping(
    data: Any,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    path: Path | None = None,
    check_videos: bool = True,
) -> Annotations:
    """Validate parsed YAML; see `load_annotations`."""
    try:
        parsed = AnnotationFile.model_validate(data)
    except ValidationError as exc:
        raise AnnotationError(_format_errors(path, data, exc)) from exc
    env = environ if environ is not None else {}
    clips = []
    for clip in parsed.clips:
        video = resolve_video(clip.video, base_dir, env, clip=clip.name)
        if check_videos and not video.is_file():
            raise AnnotationError(
                f"annotations {path}: clip {clip.name!r}: expected a video file at {video} "
                f"(from {clip.video!r}), got nothing there"
                + (f"; set {SHARED_DATA_VAR}" if SHARED_DATA_VAR in clip.video else "")
            )
        clips.append(
            ClipSpec(
                name=clip.name,
                video=video,
                events=tuple(
                    TruthEvent(e.drop_at, e.tolerance_s, e.where, e.note) for e in clip.events
                ),
                view_changes=tuple(
                    TruthView(v.condition, v.at, v.tolerance_s, v.note) for v in clip.view_changes
                ),
                camera_id=clip.camera.id or clip.name,
                zones=clip.camera.zones,
                dwell_s=clip.dwell_s,
                group=clip.group,
                note=clip.note,
            )
        )
        try:
            clips[-1].camera_zones()
        except ValueError as exc:
            raise AnnotationError(f"annotations {path}: clip {clip.name!r}: {exc}") from exc
    return Annotations(path, tuple(clips))


def load_annotations(
    path: Path, environ: Mapping[str, str] | None = None, *, check_videos: bool = True
) -> Annotations:
    """Read and validate an annotation file. `environ` resolves `${VAR}` in video paths
    (pass `os.environ` at the entry point); videos must exist unless `check_videos` is off."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnnotationError(f"annotations {path}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise AnnotationError(f"annotations {path}: expected YAML, got: {exc}") from exc
    if not isinstance(data, dict):
        raise AnnotationError(
            f"annotations {path}: expected a mapping with `clips`, got {type(data).__name__}"
        )
    return annotations_from_mapping(
        data, path.parent, environ, path=path, check_videos=check_videos
    )
