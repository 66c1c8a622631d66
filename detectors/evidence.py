"""Evidence packs of dumping events: a still before the drop, a still at the alert, a crop of
the owner and a short clip around the drop, each stored with its SHA-256.

`EvidenceRecorder` (one per camera) keeps recent frames in a ring buffer. When the dumping
logic raises an event (a `DumpingRecord` with phase "new"), the frames the pack needs are
pinned at once; the pack is written when the post-roll frames have come in, or on `flush`.
Everything runs on the frames' capture times: nothing here reads a clock, so a replay of the
same frames writes the same bytes.

People other than the owner are pixelated in what is shared; the unblurred originals are
written only when configured, under `originals/` beside the pack.

Evidence never holds an event back: each artefact is written on its own, and one that cannot
be written (the store full, unwritable or gone) is left out, noted on the pack
(`EvidencePack.error`, which the event messages carry as `evidence_error`) and logged once
per camera and reason, not once per artefact.

Layout: <root>/<camera_id>/<YYYY-MM-DD, UTC day of the alert>/<event_id>/
    before.jpg  alert.jpg  owner.jpg  clip.webm  [originals/{the same, SHA256SUMS}]

The clip is VP9 in WebM, which a browser's <video> plays and seeks (the muxer indexes it with
Cues) when the file is served with Range requests.
"""

from __future__ import annotations

import io
import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import cv2
import numpy as np
import numpy.typing as npt

from detectors.detections import Detections
from detectors.dumping import PERSON, DumpingRecord
from pantau.codec import describe
from pantau.evidence_store import FileStore, Store, sha256_hex
from pantau.messages import EvidenceRef
from pantau.settings import EvidenceSettings

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]

KINDS = ("before", "alert", "owner", "clip")
ORIGINALS_DIR = "originals"
ALERT_LABEL = "dumping"
CLIP_NAME = "clip.webm"
# Red in BGR: the one colour on the alert still, so the object stands out at a glance.
ALERT_COLOUR = (0, 0, 255)

# Capture times are floats (often epoch seconds): 12.8 + 5.0 is not quite 17.8.
_EPS = 1e-6
# A still "nearest" a moment must be this close to it: a person walking 1.3 m/s moves more
# than 2 m in that time, so an older frame no longer shows what the box framed.
_NEAREST_S = 2.0
# Detector boxes are tight and clip elbows and hair; pixelate a little beyond them.
_BYSTANDER_PAD = 0.1
# Cells across the larger side of a bystander box: a face becomes one or two flat blocks.
# Pixelation rather than a Gaussian blur: a mild blur can be partly undone, a flat block not.
_PIXEL_CELLS = 8
# Clip frame rate bounds: below 0.5 fps a player shows a slide show, above 30 fps the
# camera (5 fps on the detect stream) cannot have sent that many frames.
_MIN_FPS, _MAX_FPS = 0.5, 30.0
_FALLBACK_FPS = 5.0
# The clip is for a browser's <video>: Chromium plays VP8 and VP9 in WebM, not MPEG-4 Part 2.
# VP9 through PyAV's libvpx at its real-time deadline: OpenCV's writer runs libvpx at its
# slow default and passes it no speed setting (VP8 26 ms a frame, VP9 about 200 ms, on one
# core, for 640x360 sample footage); here VP9 takes about 4 ms a frame, at constant quality
# (crf 32) and a fifth of the size. One thread, and FFmpeg's bit-exact muxing: the same
# frames always make the same bytes. `bench/evidence_clip.py` measures it.
_CLIP_CODEC = "libvpx-vp9"
_CLIP_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}
# A replayed "new" record of an event already packed is ignored; this many ids are kept.
_DONE_IDS = 1024
# How much of the reasons a pack's error keeps (the message field holds 4000 characters).
_MAX_ERROR_CHARS = 1000
# Why an artefact is missing when the frame it needs had left the buffer (or never came).
_NOT_BUFFERED = "no buffered frame for it"


@dataclass(frozen=True)
class EvidenceConfig:
    """Where evidence goes and what it covers; times are seconds.

    The buffer reaches back `buffer_s`, which must cover the pre-roll plus the time from
    the object's appearance to the alert (the zone's dwell time, the seconds the
    static-object model takes to confirm the object and the time the owner stood by it):
    with a 30 s dwell that is 40-60 s after the drop, so a buffer of only the pre-roll would
    have lost the drop and the "before" still by the time the alert comes.
    """

    root: Path
    # The settings' fields (`dumping.evidence`): their defaults and bounds are the settings'.
    # The clip starts `pre_roll_s` before the object appeared and ends `post_roll_s` after
    # the alert.
    pre_roll_s: float = EvidenceSettings.default_of("pre_roll_s")
    post_roll_s: float = EvidenceSettings.default_of("post_roll_s")
    blur_bystanders: bool = EvidenceSettings.default_of("blur_bystanders")
    keep_originals: bool = EvidenceSettings.default_of("keep_originals")
    jpeg_quality: int = EvidenceSettings.default_of("jpeg_quality")
    buffer_s: float = EvidenceSettings.default_of("buffer_s")
    # At 5 fps, 120 s. A 640x360 frame is 691 kB raw but 14-26 kB as a quality-85 JPEG
    # (measured: 26 kB a synthetic street frame, 14-26 kB the Intel sample clips), so a full
    # buffer holds about 10-16 MB per camera, 25 MB for a busy scene at 40 kB a frame.
    max_buffer_frames: int = 600
    # The owner crop is the owner's box grown by this fraction of its size on every side.
    owner_pad: float = 0.2

    def __post_init__(self) -> None:
        EvidenceSettings.check_fields(
            "evidence config", {name: getattr(self, name) for name in _FROM_SETTINGS}
        )
        checks = {
            "buffer_s >= pre_roll_s": self.buffer_s >= self.pre_roll_s,
            "max_buffer_frames >= 1": self.max_buffer_frames >= 1,
            "owner_pad >= 0": self.owner_pad >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"evidence config: expected {', '.join(failed)}, got {self}")


_FROM_SETTINGS = (
    "pre_roll_s",
    "post_roll_s",
    "blur_bystanders",
    "keep_originals",
    "jpeg_quality",
    "buffer_s",
)


class EvidencePack(NamedTuple):
    """A pack, or what there is of it so far: the event and its artefacts (kinds before,
    alert, owner, clip), and why any of them is missing (None when none is)."""

    event_id: uuid.UUID
    refs: tuple[EvidenceRef, ...]
    error: str | None = None


def failure_reason(exc: BaseException) -> str:
    """What an event says about an artefact that could not be written: the error without
    the file's path, which only names this machine's folders (the message already names
    the camera and the event), e.g. "OSError: [Errno 28] No space left on device"."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    return describe(exc)


# --------------------------------------------------------------------------- store


# The store itself lives in the spine (pantau.evidence_store): the console reads it too.


# --------------------------------------------------------------------------- pictures


def draw_alert(
    image: Image,
    box: Box,
    label: str = ALERT_LABEL,
    *,
    colour: tuple[int, int, int] = ALERT_COLOUR,
) -> Image:
    """A copy of `image` with `box` (x1, y1, x2, y2) outlined and labelled."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    # 2 px on the 360p detect stream, thicker on larger pictures.
    thickness = max(2, round(min(height, width) / 180))
    scale = max(0.45, min(height, width) / 720)
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
    if label:
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        tag_h = th + base + 4
        # Above the box when there is room, else inside its top edge.
        top = y1 - tag_h if y1 - tag_h >= 0 else max(0, y1)
        left = min(max(0, x1), max(0, width - tw - 6))
        cv2.rectangle(canvas, (left, top), (left + tw + 6, top + tag_h), colour, -1)
        cv2.putText(
            canvas,
            label,
            (left + 3, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return canvas


def _int_box(
    box: Sequence[float], pad: float, width: int, height: int
) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
    return (
        max(0, math.floor(x1 - dx)),
        max(0, math.floor(y1 - dy)),
        min(width, math.ceil(x2 + dx)),
        min(height, math.ceil(y2 + dy)),
    )


def _pixelate(image: Image, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return
    cell = max(1.0, max(w, h) / _PIXEL_CELLS)
    small = cv2.resize(
        image[y1:y2, x1:x2],
        (max(1, round(w / cell)), max(1, round(h / cell))),
        interpolation=cv2.INTER_AREA,
    )
    image[y1:y2, x1:x2] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def redact_bystanders(image: Image, detections: Detections, owner_track_id: int | None) -> Image:
    """A copy of `image` with every person but the owner pixelated.

    A person without a track id is not known to be the owner, so is pixelated. Where a
    bystander overlaps the owner, the owner's box stays sharp: the owner is what the
    evidence is for (the unblurred originals are optional, so this copy may be all there is).
    """
    out = image.copy()
    if len(detections) == 0:
        return out
    height, width = image.shape[:2]
    ids = detections.tracker_id
    is_owner = (
        np.zeros(len(detections), dtype=bool)
        if ids is None or owner_track_id is None
        else ids == owner_track_id
    )
    bystanders = (detections.class_id == PERSON) & ~is_owner
    if not bystanders.any():
        return out
    for row in detections.xyxy[bystanders]:
        _pixelate(out, _int_box(row, _BYSTANDER_PAD, width, height))
    for row in detections.xyxy[is_owner]:
        x1, y1, x2, y2 = _int_box(row, 0.0, width, height)
        out[y1:y2, x1:x2] = image[y1:y2, x1:x2]
    return out


def _encode_jpeg(image: Image, quality: int, what: str) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{what}: JPEG encoding of a {image.shape} image failed")
    return bytes(buffer.tobytes())


def _decode_jpeg(data: bytes, what: str) -> Image:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{what}: expected a JPEG frame from the buffer, got undecodable bytes")
    return np.asarray(image, dtype=np.uint8)


# --------------------------------------------------------------------------- buffer


@dataclass(frozen=True, slots=True)
class BufferedFrame:
    """One frame as the buffer keeps it: JPEG bytes, capture time and its detections."""

    t: float
    jpeg: bytes
    detections: Detections
    width: int
    height: int


class FrameBuffer:
    """Recent frames of one camera, bounded by age (relative to the newest frame's capture
    time, never the clock) and by count."""

    def __init__(
        self, camera_id: str, *, max_age_s: float, max_frames: int, jpeg_quality: int = 85
    ) -> None:
        self.camera_id = camera_id
        self.max_age_s = max_age_s
        self.max_frames = max_frames
        self.jpeg_quality = jpeg_quality
        self._frames: deque[BufferedFrame] = deque()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """JPEG bytes held (the detections add a few hundred bytes a frame)."""
        return self._nbytes

    @property
    def oldest(self) -> float | None:
        return self._frames[0].t if self._frames else None

    @property
    def newest(self) -> float | None:
        return self._frames[-1].t if self._frames else None

    def add(
        self, t: float, image: Image, detections: Detections, jpeg: bytes | None = None
    ) -> BufferedFrame:
        """`jpeg`: the frame as it arrived, when it came as a JPEG (the detect stream does),
        kept as it is instead of being encoded again."""
        if not math.isfinite(t):
            raise ValueError(f"camera {self.camera_id}: expected a finite capture time, got {t}")
        if self._frames and t < self._frames[-1].t:
            raise ValueError(
                f"camera {self.camera_id}: expected frames in time order, got {t:.3f} "
                f"after {self._frames[-1].t:.3f}"
            )
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"camera {self.camera_id}: expected a BGR uint8 image (H, W, 3), got "
                f"{image.dtype} {image.shape}"
            )
        if jpeg is None:
            jpeg = _encode_jpeg(image, self.jpeg_quality, f"camera {self.camera_id}")
        frame = BufferedFrame(t, jpeg, detections, image.shape[1], image.shape[0])
        self._frames.append(frame)
        self._nbytes += len(jpeg)
        while self._frames and (
            len(self._frames) > self.max_frames or t - self._frames[0].t > self.max_age_s + _EPS
        ):
            self._nbytes -= len(self._frames.popleft().jpeg)
        return frame

    def between(self, start: float, end: float) -> list[BufferedFrame]:
        return [f for f in self._frames if start - _EPS <= f.t <= end + _EPS]

    def at_or_before(self, t: float) -> BufferedFrame | None:
        """The newest frame captured at or before `t`."""
        found = None
        for frame in self._frames:
            if frame.t > t + _EPS:
                break
            found = frame
        return found

    def nearest(self, t: float) -> BufferedFrame | None:
        return _nearest(self._frames, t)

    def clear(self) -> None:
        self._frames.clear()
        self._nbytes = 0


def _nearest(frames: Iterable[BufferedFrame], t: float) -> BufferedFrame | None:
    best = min(frames, key=lambda f: abs(f.t - t), default=None)
    if best is None or abs(best.t - t) > _NEAREST_S:
        return None
    return best


# --------------------------------------------------------------------------- clip


def clip_timing(times: Sequence[float]) -> tuple[float, list[int]]:
    """(fps, index of the frame shown in each output slot) for frames at `times`.

    The fps comes from the median gap between frames; each slot shows the latest frame at or
    before it (within half a slot), so gaps (a motion-gated camera, dropped frames) hold the
    picture and the clip lasts as long as the real scene did.
    """
    if not times:
        return _FALLBACK_FPS, []
    gaps = np.diff(np.asarray(times, dtype=np.float64))
    gaps = gaps[gaps > _EPS]
    fps = _FALLBACK_FPS if gaps.size == 0 else 1.0 / float(np.median(gaps))
    fps = round(min(_MAX_FPS, max(_MIN_FPS, fps)), 3)
    slots = round((times[-1] - times[0]) * fps) + 1
    picks: list[int] = []
    i = 0
    for k in range(slots):
        slot_t = times[0] + k / fps
        while i + 1 < len(times) and times[i + 1] <= slot_t + 0.5 / fps:
            i += 1
        picks.append(i)
    return fps, picks


def _write_clips(
    frames: Sequence[BufferedFrame],
    variants: Sequence[Callable[[Image, BufferedFrame], Image]],
    what: str,
) -> list[bytes]:
    """One WebM (VP9) clip per variant (e.g. redacted, original) in one decoding pass."""
    fps, picks = clip_timing([f.t for f in frames])
    # 4:2:0 video has even sides.
    size = (frames[0].width // 2 * 2, frames[0].height // 2 * 2)
    rate = Fraction(fps).limit_denominator(1001)
    outputs = [io.BytesIO() for _ in variants]
    containers: list[Any] = []
    streams: list[Any] = []
    try:
        try:
            for out in outputs:
                container = av.open(out, "w", format="webm", options={"fflags": "+bitexact"})
                containers.append(container)
                stream: Any = container.add_stream(_CLIP_CODEC, rate=rate)
                stream.width, stream.height = size
                stream.pix_fmt = "yuv420p"
                stream.options = dict(_CLIP_OPTIONS)
                stream.codec_context.thread_count = 1
                streams.append(stream)
        except (av.FFmpegError, ValueError) as exc:
            raise OSError(
                f"{what}: expected PyAV to write VP9 in WebM ({_CLIP_CODEC}): {exc}"
            ) from exc
        shown: list[Image] = []
        last = -1
        for n, index in enumerate(picks):
            if index != last:
                frame = frames[index]
                image = _decode_jpeg(frame.jpeg, what)
                if (image.shape[1], image.shape[0]) != size:
                    # The camera changed resolution mid-clip (a video has one size), or
                    # its side is odd.
                    image = np.asarray(cv2.resize(image, size), dtype=np.uint8)
                shown = [variant(image, frame) for variant in variants]
                last = index
            for container, stream, picture in zip(containers, streams, shown, strict=True):
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="bgr24")
                video.pts = n
                video.time_base = 1 / rate
                for packet in stream.encode(video):
                    container.mux(packet)
        for container, stream in zip(containers, streams, strict=True):
            for packet in stream.encode():
                container.mux(packet)
    finally:
        for container in containers:
            container.close()
    return [_fixed_track_uids(out.getvalue(), what) for out in outputs]


# Matroska element ids on the way to the track UIDs.
_SEGMENT, _TRACKS, _TRACK_ENTRY, _TRACK_UID = 0x18538067, 0x1654AE6B, 0xAE, 0x73C5
_TAGS, _TAG, _TARGETS, _TAG_TRACK_UID = 0x1254C367, 0x7373, 0x63C0, 0x63C5


def _fixed_track_uids(data: bytes, what: str) -> bytes:
    """The clip with track UID n+1 for its n-th track, where FFmpeg's muxer draws them at
    random: so a replay of the same frames writes the same bytes (and the same SHA-256).
    FFmpeg numbers them the same way in its bit-exact mode. The UIDs only tie the tags to
    their track, and every value keeps its length, so no offset in the file moves."""
    out = bytearray(data)
    uids: dict[bytes, int] = {}
    try:
        entries = _elements(data, 0, len(data), _SEGMENT, _TRACKS, _TRACK_ENTRY)
        for n, (_, start, end) in enumerate(entries):
            for _, uid_start, uid_end in _elements(data, start, end, _TRACK_UID):
                uids[data[uid_start:uid_end]] = n + 1
                out[uid_start:uid_end] = (n + 1).to_bytes(uid_end - uid_start)
        tags = _elements(data, 0, len(data), _SEGMENT, _TAGS, _TAG, _TARGETS, _TAG_TRACK_UID)
        for _, start, end in tags:
            uid = uids.get(data[start:end])
            if uid is not None:
                out[start:end] = uid.to_bytes(end - start)
        if not uids:
            raise ValueError(f"no video track in its {len(data)} bytes")
    except (IndexError, ValueError, OverflowError) as exc:
        # A temporary folder that filled up while the clip was written leaves it cut short.
        raise ValueError(f"{what}: expected a whole WebM clip from the encoder, got {exc}") from exc
    return bytes(out)


def _elements(data: bytes, start: int, end: int, *path: int) -> Iterator[tuple[int, int, int]]:
    """The elements at `path` (ids, one level each) below data[start:end]."""
    for ident, e_start, e_end in _ebml(data, start, end):
        if ident == path[0]:
            if len(path) == 1:
                yield ident, e_start, e_end
            else:
                yield from _elements(data, e_start, e_end, *path[1:])


def _ebml(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, payload start, payload end) of each EBML element in data[start:end]; an element
    of unknown size (a live stream's) runs to `end`."""
    pos = start
    while pos < end:
        ident, pos = _vint(data, pos, keep_marker=True)
        size, after = _vint(data, pos, keep_marker=False)
        unknown = size == (1 << (7 * (after - pos))) - 1
        pos = after
        stop = end if unknown else pos + size
        if stop > end:
            raise ValueError(f"element {ident:X} at {pos} runs past its parent's end {end}")
        yield ident, pos, stop
        pos = stop


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `pos`: (value, position after it)."""
    first = data[pos]
    length = 9 - first.bit_length()
    if length > 8 or pos + length > len(data):
        raise ValueError(f"no EBML number at byte {pos} of {len(data)}")
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in data[pos + 1 : pos + length]:
        value = value << 8 | byte
    return value, pos + length


# --------------------------------------------------------------------------- recorder


@dataclass
class _Pending:
    record: DumpingRecord
    start: float
    end: float
    frames: list[BufferedFrame]
    before: BufferedFrame | None
    owner: BufferedFrame | None
    due: bool = False
    refs: list[EvidenceRef] = field(default_factory=list)
    stills_written: bool = False
    sums: list[str] = field(default_factory=list)
    # Why artefacts are missing: reason -> the kinds it cost, in the order they failed.
    missing: dict[str, list[str]] = field(default_factory=dict)

    def lacks(self, kind: str, reason: str) -> None:
        kinds = self.missing.setdefault(reason, [])
        if kind not in kinds:
            kinds.append(kind)

    @property
    def error(self) -> str | None:
        if not self.missing:
            return None
        text = "; ".join(
            f"{', '.join(kinds)} missing: {reason}" for reason, kinds in self.missing.items()
        )
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."

    def so_far(self) -> EvidencePack:
        return EvidencePack(self.record.event_id, tuple(self.refs), self.error)


@dataclass
class _PackWriter:
    """Writes one pack's artefacts, redacted for sharing (and originals when kept)."""

    store: Store
    pack: _Pending
    what: str
    prefix: str
    blur: bool
    keep: bool

    def shared(self, image: Image, frame: BufferedFrame) -> Image:
        owner_id = self.pack.record.owner_track_id
        return redact_bystanders(image, frame.detections, owner_id) if self.blur else image

    def original(self, image: Image, frame: BufferedFrame) -> Image:
        return image

    def put(self, kind: str, name: str, data: bytes, unblurred: bytes | None) -> None:
        uri = self.store.put(f"{self.prefix}/{name}", data)
        self.pack.refs.append(EvidenceRef(kind=kind, uri=uri, sha256=sha256_hex(data)))
        if self.keep and unblurred is not None:
            self.store.put(f"{self.prefix}/{ORIGINALS_DIR}/{name}", unblurred)
            self.pack.sums.append(f"{sha256_hex(unblurred)}  {name}\n")


class EvidenceRecorder:
    """Evidence packs of one camera. Feed every frame the detector saw with `add_frame`
    (then the records that frame produced with `on_record`), and collect finished packs
    with `ready`.

    `add_frame` costs about 0.7 ms (one JPEG encoding of a 640x360 frame). `ready` does
    the decoding, blurring, encoding (VP9) and writing, about 4 ms per clip frame on one
    core, twice that when the unblurred original is kept (`bench/evidence_clip.py`): under a
    second for a 40 s clip at 5 fps, under 3 s for the longest (buffer_s + post-roll, 625
    frames). Not thread-safe: one thread at a time.
    """

    def __init__(
        self,
        camera_id: str,
        config: EvidenceConfig,
        store: Store | None = None,
        clock: Callable[[float], datetime] | None = None,
    ) -> None:
        self.camera_id = camera_id
        # Frame seconds -> UTC, for the date folder; a live camera's seconds are Unix time.
        self._clock = clock or (lambda t: datetime.fromtimestamp(t, tz=UTC))
        self.config = config
        self.store: Store = store if store is not None else FileStore(config.root)
        self.buffer = FrameBuffer(
            camera_id,
            max_age_s=config.buffer_s,
            max_frames=config.max_buffer_frames,
            jpeg_quality=config.jpeg_quality,
        )
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._done: deque[uuid.UUID] = deque(maxlen=_DONE_IDS)
        # Artefacts that failed since the last one written, by reason: each reason is logged
        # once, not for every artefact of every event while the store stays full.
        self._failures: dict[str, int] = {}

    @property
    def pending(self) -> tuple[uuid.UUID, ...]:
        """Events whose pack is started and not yet returned by `ready`."""
        return tuple(self._pending)

    def add_frame(
        self, t: float, image: Image, detections: Detections, jpeg: bytes | None = None
    ) -> None:
        """A frame (BGR) at capture time `t` with its tracked people and vehicles; `jpeg`, the
        same frame as received, saves encoding it again."""
        frame = self.buffer.add(t, image, detections, jpeg)
        for pack in self._pending.values():
            if pack.due:
                continue
            if t <= pack.end + _EPS:
                pack.frames.append(frame)
            if t >= pack.end - _EPS:
                pack.due = True

    def on_record(self, record: DumpingRecord) -> None:
        """A step of a dumping event; phase "new" (the alert) starts its pack."""
        if record.camera_id != self.camera_id:
            raise ValueError(
                f"camera {self.camera_id}: expected dumping records of this camera, got one "
                f"of {record.camera_id!r} (event {record.event_id})"
            )
        if record.phase != "new":
            return
        if record.event_id in self._pending or record.event_id in self._done:
            log.debug(
                "camera %s: event %s already has a pack; repeated alert ignored",
                self.camera_id,
                record.event_id,
            )
            return
        start = record.appeared_at - self.config.pre_roll_s
        end = record.at + self.config.post_roll_s
        owner = None
        if record.owner_seen_at is not None and record.owner_box is not None:
            owner = self.buffer.nearest(record.owner_seen_at)
        pack = _Pending(
            record=record,
            start=start,
            end=end,
            frames=self.buffer.between(start, end),
            before=self.buffer.at_or_before(record.before_at),
            owner=owner,
        )
        newest = self.buffer.newest
        pack.due = newest is not None and newest >= end - _EPS
        oldest = self.buffer.oldest
        if oldest is not None and oldest > start + _EPS:
            log.info(
                "camera %s: event %s: the clip should start at %.1f, the buffer reaches back "
                "to %.1f only (buffer_s %.0f, max_buffer_frames %d)",
                self.camera_id,
                record.event_id,
                start,
                oldest,
                self.config.buffer_s,
                self.config.max_buffer_frames,
            )
        self._pending[record.event_id] = pack

    def stills(self, event_id: uuid.UUID) -> EvidencePack:
        """Write the stills of a started pack now (its clip follows in `ready`); returns
        the pack as it stands. A still that cannot be written is left out, and the pack's
        error says why: the alert goes out without it."""
        pack = self._pending.get(event_id)
        if pack is None:
            return EvidencePack(event_id, ())
        if not pack.stills_written:
            self._write_stills(pack)
        return pack.so_far()

    def ready(self) -> list[EvidencePack]:
        """Write the packs whose post-roll is complete; those finished since the last call.

        A pack whose artefacts fail to write is returned with those that were written and
        the reason for the others: the alert stands without its evidence rather than
        stopping detection.
        """
        packs: list[EvidencePack] = []
        for event_id in [e for e, p in self._pending.items() if p.due]:
            pack = self._pending.pop(event_id)
            self._done.append(event_id)
            if not pack.stills_written:
                self._write_stills(pack)
            self._write_clip(pack)
            packs.append(pack.so_far())
        return packs

    def flush(self) -> list[EvidencePack]:
        """Finish every pending pack with the frames there are (shutdown, end of a file)."""
        for pack in self._pending.values():
            pack.due = True
        return self.ready()

    def close(self) -> list[EvidencePack]:
        packs = self.flush()
        self.buffer.clear()
        return packs

    # ------------------------------------------------------------------ writing

    def _writer(self, pack: _Pending) -> _PackWriter:
        record = pack.record
        day = self._clock(record.at).strftime("%Y-%m-%d")
        blur = self.config.blur_bystanders
        return _PackWriter(
            store=self.store,
            pack=pack,
            what=f"camera {self.camera_id}: event {record.event_id}",
            prefix=f"{self.camera_id}/{day}/{record.event_id}",
            blur=blur,
            # Without blurring the shared artefacts are the originals; a second copy adds
            # nothing.
            keep=self.config.keep_originals and blur,
        )

    def _attempt(self, pack: _Pending, kind: str, write: Callable[[], object]) -> None:
        """One artefact: whatever goes wrong writing it (the store full or unwritable, a
        frame that no longer decodes) leaves it out with the reason, and the others are
        still tried."""
        written = len(pack.refs)
        try:
            write()
        except Exception as exc:
            reason = failure_reason(exc)
            # The shared copy made it when only its unblurred original failed.
            lost = kind if len(pack.refs) == written else f"original {kind}"
            pack.lacks(lost, reason)
            self._failed(pack.record.event_id, lost, reason, exc)
            return
        if len(pack.refs) > written:
            self._recovered()

    def _failed(self, event: uuid.UUID, kind: str, reason: str, exc: BaseException) -> None:
        count = self._failures.get(reason, 0)
        self._failures[reason] = count + 1
        if count:
            log.debug(
                "camera %s: event %s: %s not written: %s", self.camera_id, event, kind, reason
            )
            return
        # A surprise (not the store refusing) may be a bug: its traceback helps.
        log.error(
            "camera %s: evidence not written (event %s, %s): %s; events go out marked as "
            "missing evidence, and further failures for this reason are counted, not logged",
            self.camera_id,
            event,
            kind,
            reason,
            exc_info=None if isinstance(exc, OSError) else exc,
        )

    def _recovered(self) -> None:
        if not self._failures:
            return
        log.warning(
            "camera %s: evidence is written again, after %d artefacts failed (%s)",
            self.camera_id,
            sum(self._failures.values()),
            "; ".join(self._failures),
        )
        self._failures.clear()

    def _write_stills(self, pack: _Pending) -> None:
        """The before and alert stills and the owner crop: written at the alert, so its
        message can carry them while the clip still waits for its post-roll."""
        pack.stills_written = True
        record = pack.record
        writer = self._writer(pack)
        what, shared, put = writer.what, writer.shared, writer.put
        quality = self.config.jpeg_quality

        before = pack.before
        if before is not None:

            def write_before() -> None:
                image = _decode_jpeg(before.jpeg, what)
                put(
                    "before",
                    "before.jpg",
                    _encode_jpeg(shared(image, before), quality, what),
                    before.jpeg,
                )

            self._attempt(pack, "before", write_before)
        else:
            pack.lacks("before", _NOT_BUFFERED)
            log.warning(
                "%s: no buffered frame at or before %.1f (buffer %s..%s): no before still; "
                "buffer_s %.0f may be shorter than pre-roll plus the time to the alert",
                what,
                record.before_at,
                _fmt(self.buffer.oldest),
                _fmt(self.buffer.newest),
                self.config.buffer_s,
            )

        alert = _nearest(pack.frames, record.at)
        if alert is not None:

            def write_alert() -> None:
                image = _decode_jpeg(alert.jpeg, what)
                label = f"{ALERT_LABEL} {record.confidence:.2f}"
                put(
                    "alert",
                    "alert.jpg",
                    _encode_jpeg(
                        draw_alert(shared(image, alert), record.box, label), quality, what
                    ),
                    _encode_jpeg(draw_alert(image, record.box, label), quality, what),
                )

            self._attempt(pack, "alert", write_alert)
        else:
            pack.lacks("alert", _NOT_BUFFERED)
            log.warning(
                "%s: no frame within %.1f s of the alert at %.1f", what, _NEAREST_S, record.at
            )

        owner, owner_box = pack.owner, record.owner_box
        if owner is not None and owner_box is not None:

            def write_owner() -> None:
                image = _decode_jpeg(owner.jpeg, what)
                x1, y1, x2, y2 = _int_box(owner_box, self.config.owner_pad, *_wh(image))
                if x2 <= x1 or y2 <= y1:
                    pack.lacks("owner", "the owner's box lies outside the frame")
                    log.warning("%s: owner box %s lies outside the frame", what, owner_box)
                    return
                put(
                    "owner",
                    "owner.jpg",
                    _encode_jpeg(shared(image, owner)[y1:y2, x1:x2], quality, what),
                    _encode_jpeg(image[y1:y2, x1:x2], quality, what),
                )

            self._attempt(pack, "owner", write_owner)
        elif record.owner_track_id is not None:
            pack.lacks("owner", _NOT_BUFFERED)
            log.warning(
                "%s: no buffered frame within %.1f s of the owner sighting at %s",
                what,
                _NEAREST_S,
                _fmt(record.owner_seen_at),
            )

    def _write_clip(self, pack: _Pending) -> None:
        writer = self._writer(pack)
        what = writer.what
        if pack.frames:

            def write_clip() -> None:
                variants = [writer.shared, writer.original] if writer.keep else [writer.shared]
                clips = _write_clips(pack.frames, variants, what)
                writer.put("clip", CLIP_NAME, clips[0], clips[1] if writer.keep else None)

            self._attempt(pack, "clip", write_clip)
        else:
            pack.lacks("clip", _NOT_BUFFERED)
            log.warning("%s: no frames between %.1f and %.1f: no clip", what, pack.start, pack.end)

        if pack.sums:
            sums = "".join(pack.sums).encode()
            self._attempt(
                pack,
                "original SHA256SUMS",
                lambda: self.store.put(f"{writer.prefix}/{ORIGINALS_DIR}/SHA256SUMS", sums),
            )
        error = pack.error
        log.info(
            "%s: evidence pack written (%s; %d clip frames %.1f..%.1f)%s",
            what,
            ", ".join(r.kind for r in pack.refs) or "nothing",
            len(pack.frames),
            pack.frames[0].t if pack.frames else pack.start,
            pack.frames[-1].t if pack.frames else pack.end,
            f"; {error}" if error else "",
        )


def _wh(image: Image) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def _fmt(t: float | None) -> str:
    return "none" if t is None else f"{t:.1f}"
