"""How many cameras one machine (here: 2 cores) serves at 5 fps with the motion gate on.

The shared clip (a table where people come and go: normal activity) is played as N live
cameras, one `pantau ingest camera --realtime` process each (5 fps, 640 px, the configured
motion gate), into one `pantau detect` (`detector.max_batch` as configured;
`--detect-workers K` processes in its group) under a
throw-away topic prefix and consumer group. The network is the configured detector, in one
of three modes (`--mode`), each with its own figure names:

- `320` (the default; the size for many cameras on a small machine): the whole frame at
  `detector.imgsz` 320, figures `cameras_at_5fps...`;
- `640`: the whole frame at 640, figures `cameras_at_5fps_640...`;
- `regions`: `detector.imgsz` 320 with `detect.regions.enabled`, the network looking at
  crops around motion at the frame's own resolution, figures `cameras_at_5fps_regions...`.

The modes 320 and 640 run with `detect.regions.enabled` off, whatever the configuration
says. `--mode regions-vs-640` searches at 640 and then with regions, each search with its
own `--budget-s`, and adds `cameras_at_5fps_regions_vs_640`: the cameras with regions over
the cameras at 640 (goal: at least 1.5). `--imgsz 320` and `--imgsz 640` are the modes 320
and 640. With `type: auto` the detector runs on the backend it chose for its size on this
machine. Camera i starts i/N of the way into the clip (through `--start-s`), so the cameras
do not move in lockstep. After a warm-up, a fixed window is watched. N passes when, over the
window,

- the detector keeps up: its consumer-group lag on the frames topic does not grow (the
  least-squares trend is at most max(0.3, 2 % of the input) frames/s) and ends within 2 s of
  input (or two batches), and over the window it skipped no frame as too old
  (`detect.max_frame_age_s`: a detector that falls behind drops stale frames, which keeps the
  lag bounded by itself; counted as the frames it committed without a detections message,
  give or take a batch per detector process);
- no camera skipped a frame for any reason other than fps sampling and the motion gate: the
  ingest's final counters show no frame dropped at send time, no failed send, no reconnect,
  and every camera decoded the clip at real-time pace (at least 97 % of the clip's frame rate,
  from its heartbeats on cameras.health.v1); a camera that falls behind a live stream loses
  frames even when none is counted as skipped.

N goes 8, 16, 32, … (`--start-n`) until one fails, then bisects; the figure is the largest
passing N.
A failing N is stopped early once the lag is past 10 s of full-rate input. Every N also gets
the detector's frames/s, the input frames/s (after the gate), the lag trend, the CPU the
detector and the cameras used and the detector's resident memory. Nothing else is running
for the pipeline (no sink): this is the camera side and the detector. On a machine shared
with other work the search measures what is left over; `cameras_at_5fps_cpu_estimate`
divides all the cores by the CPU the detector and cameras used per camera at the largest
passing N (what the machine would carry if it were theirs alone, before any contention), and
the other work is printed.

How close the camera side comes to what the network alone could carry:

- `cameras_at_5fps_network_cpu_ms_per_frame`: after the search, the network is timed alone in
  this process, as the detector runs it in the mode (with regions: one camera's frames in
  order, planning and crops included), on the clip at 5 fps and 640 wide, for `--network-s`
  CPU seconds;
- `cameras_at_5fps_published_share`: the share of the 5 fps frames the motion gate let
  through at the largest passing N (the smallest N tried when none passed), published /
  (published + gated) from the cameras' final counters;
- `cameras_at_5fps_ceiling = cores * 1000 ms / (5 fps * published share * network CPU ms per
  frame)`: the cameras the network's own cost allows;
- `pipeline_efficiency = cameras_at_5fps / ceiling` (goal: at least 0.8: the cameras, Kafka,
  JPEG decoding and the dumping logic together cost less than a fifth);
- `cameras_at_5fps_detector_cpu_ms_per_frame`: the detect process's whole CPU over the window
  per frame it detected, beside it, to show what the detector spends besides the network.

The detector's resident memory at that N is printed too; with the evidence ring buffers not
yet full it is not the memory per camera, which `bench/detector_memory.py` measures.

The mode's suffix names these figures outside the default mode (`pipeline_efficiency_640`,
`cameras_at_5fps_regions_ceiling`, …).

    python bench/cameras_at_5fps.py [--mode 320|640|regions|regions-vs-640]
        [--warmup-s 15] [--window-s 60] [--budget-s 690]

Each N takes about 90 s; the search stops, and says so, when the budget (11.5 minutes) has no
room for another N, so the whole run stays within about 12 minutes (twice that for
`regions-vs-640`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from kafka import KafkaConsumer, TopicPartition
from pipeline_runs import (
    BASE_CONFIG,
    REPO,
    SHARED_DATA,
    PipelineRun,
    RunFailed,
    Stage,
    base_environ,
    children,
    cpu_seconds,
    sampled_frames,
    stop_on_sigterm,
)
from tqdm import tqdm

from detectors.backends import DEFAULT_EXPORT_DIR, load_backend
from detectors.detections import kept_classes
from detectors.region_detector import Frame, RegionDetector
from pantau import kafka
from pantau.codec import DecodeError, decode_as
from pantau.messages import CameraHeartbeat
from pantau.settings import load_settings
from pantau.topics import Topics

EXPORTS = REPO / DEFAULT_EXPORT_DIR
CLIP = SHARED_DATA / "video" / "intel-sample-videos" / "one-by-one-person-detection.mp4"
FPS = 5
# Set-up and tear-down of one N on top of warm-up and window: model load, process start,
# topic deletion. Used only to decide whether another N fits in the budget.
_OVERHEAD_S = 15.0
_SAMPLE_EVERY_S = 2.0
_DONE = re.compile(
    r"camera (?P<camera>\S+): done — decoded (?P<decoded>\d+), published (?P<published>\d+), "
    r"skipped (?P<skipped>\d+) \(fps (?P<sampled>\d+), motion gate (?P<gated>\d+), "
    r"dropped (?P<dropped>\d+)\), reconnects (?P<reconnects>\d+)"
)
_FAILED_SENDS = re.compile(r"failed sends (\d+)")
_INFERENCE = re.compile(r"([\d.]+) ms inference per frame")
_TOO_OLD = re.compile(r"(\d+) frames skipped \(too old\)")
_VMRSS = re.compile(r"^VmRSS:\s+(\d+) kB", re.MULTILINE)


@dataclass(frozen=True)
class Mode:
    """What the detector runs as, and the suffix of its figures' names."""

    suffix: str
    imgsz: int
    regions: bool

    def overrides(self) -> dict[str, str]:
        """The settings for this mode on top of the configured detector (`type: auto`
        chooses the fastest backend at the size on this machine)."""
        return {
            "PANTAU__DETECTOR__IMGSZ": str(self.imgsz),
            "PANTAU__DETECT__REGIONS__ENABLED": str(self.regions).lower(),
        }


MODES = {
    "320": Mode("", 320, regions=False),
    "640": Mode("_640", 640, regions=False),
    "regions": Mode("_regions", 320, regions=True),
}
# Several searches in one invocation, and the figure comparing the last with the first.
COMPARISONS = {"regions-vs-640": ("640", "regions")}


class Heartbeats(threading.Thread):
    """The newest heartbeat of every camera, as they arrive."""

    def __init__(self, run: PipelineRun) -> None:
        super().__init__(name="heartbeats", daemon=True)
        self._settings = run.settings
        self._topic = Topics(run.settings.kafka).camera_health
        self._halt = threading.Event()
        self.lock = threading.Lock()
        self.latest: dict[str, CameraHeartbeat] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_wait_ms=200,
            **kafka.security_options(self._settings.kafka, "kafka-python"),
        )
        try:
            tps = [
                TopicPartition(self._topic, p)
                for p in consumer.partitions_for_topic(self._topic) or set()
            ]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._halt.is_set():
                for batch in consumer.poll(timeout_ms=300).values():
                    for record in batch:
                        try:
                            beat = decode_as(record.value, CameraHeartbeat)
                        except DecodeError:
                            continue
                        with self.lock:
                            self.latest[beat.camera_id] = beat
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            consumer.close()

    def snapshot(self) -> dict[str, CameraHeartbeat]:
        with self.lock:
            return dict(self.latest)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


@dataclass
class Trial:
    n: int
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    detect_fps: float = 0.0
    input_fps: float = 0.0
    lag_trend: float = 0.0
    lags: list[tuple[float, int]] = field(default_factory=list)
    detect_cores: float = 0.0
    camera_cores: float = 0.0
    machine_busy: float = 0.0
    pace: float = 0.0
    """The slowest camera's decoded frames/s over the clip's own frame rate."""
    gate_share: float = 0.0
    window_s: float = 0.0
    inference_ms: float = 0.0
    """The detector's own running figure (its stats line every 30 s), warm-up included."""
    too_old: int = 0
    """Frames the detector skipped as older than detect.max_frame_age_s (whole run)."""
    too_old_window: int = 0
    """Frames committed over the window without detections (skipped as too old)."""
    detect_rss_mb: float = 0.0
    """The detector's resident memory, its child processes included, at the window's end."""
    run_s: float = 0.0
    """Seconds the cameras had run when the memory was read."""
    evidence_buffer_s: float = 0.0
    """dumping.evidence.buffer_s: the frames the detector keeps per camera, in seconds."""
    dumping: bool = False

    @property
    def detect_cpu_ms_per_frame(self) -> float:
        """The detector's CPU over the window per frame it detected in the window."""
        return self.detect_cores / self.detect_fps * 1000 if self.detect_fps > 0 else 0.0


def rss_mb(pids: list[int]) -> float:
    """Resident memory (VmRSS) of these processes and of those they started, in MB."""
    total = 0.0
    for pid in pids:
        try:
            found = _VMRSS.search(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        total += (int(found[1]) / 1024 if found else 0.0) + rss_mb(children(pid))
    return total


def clip_info() -> tuple[float, float]:
    capture = cv2.VideoCapture(str(CLIP))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        return fps, float(capture.get(cv2.CAP_PROP_FRAME_COUNT)) / fps
    finally:
        capture.release()


def offsets(run: PipelineRun) -> tuple[int, int, int]:
    """(committed by the detector, published) on the frames topic, and detections published:
    a frame skipped as too old is committed but has no detections message."""
    topics = Topics(run.settings.kafka)
    positions = kafka.group_positions(
        run.settings.kafka, run.settings.detect.group_id, [topics.frames]
    )
    detections = kafka.message_counts(run.settings.kafka, [topics.detections])[topics.detections]
    return (
        sum(done for done, _ in positions.values()),
        sum(end for _, end in positions.values()),
        detections,
    )


def trend(points: list[tuple[float, int]]) -> float:
    if len(points) < 2:
        return 0.0
    t = np.array([p[0] for p in points])
    lag = np.array([p[1] for p in points], dtype=np.float64)
    return float(np.polyfit(t - t[0], lag, 1)[0])


def run_trial(n: int, warmup_s: float, window_s: float, detector: dict[str, str]) -> Trial:
    native_fps, clip_s = clip_info()
    # Starting points spread over the part of the clip that plays to its end within the run.
    spread = max(0.0, clip_s - warmup_s - window_s - 10.0)
    cameras = [
        {"id": f"cam-{i:02d}", "url": str(CLIP), "fps": FPS, "max_width": 640} for i in range(n)
    ]
    overrides = {
        "PANTAU__CAMERAS": json.dumps(cameras),
        # Counters every second, so the window's start and end are read to the second.
        "PANTAU__INGEST__HEARTBEAT_INTERVAL_S": "1",
        **detector,
    }
    trial = Trial(n)
    with PipelineRun(overrides) as run:
        trial.evidence_buffer_s = run.settings.dumping.evidence.buffer_s
        trial.dumping = run.settings.dumping.enabled
        topics = Topics(run.settings.kafka)
        kafka.ensure_topics(run.settings.kafka, topics.specs())
        beats = Heartbeats(run)
        beats.start()
        try:
            detect = run.start("detect", "detect")
            run.wait_for_log(detect, "ready in", timeout=180)
            ingests: list[Stage] = []
            cameras_started = time.monotonic()
            for i, camera in enumerate(cameras):
                start_s = spread * i / n
                ingests.append(
                    run.start(str(camera["id"]), "ingest", "camera", "--camera",
                              str(camera["id"]), "--realtime", "--loop",
                              "--start-s", f"{start_s:.1f}")
                )  # fmt: skip
            max_batch = run.settings.detector.max_batch if run.settings.detector else 1
            workers = run.settings.detect.workers
            abort_lag = 10 * n * FPS
            total_s = round(warmup_s + window_s)
            bar = tqdm(total=total_s, desc=f"N={n}", unit="s", mininterval=1)
            began = time.monotonic()
            window_start: float | None = None
            first: tuple[int, int, int] | None = None
            last: tuple[int, int, int] = (0, 0, 0)
            beats0: dict[str, CameraHeartbeat] = {}
            cpu0 = (0.0, 0.0)
            busy0 = (0.0, 0.0)
            while True:
                now = time.monotonic()
                run.check_alive(detect, *ingests)
                if beats.error is not None:
                    raise RunFailed(f"heartbeat listener failed: {beats.error!r}")
                if window_start is None and now - began >= warmup_s:
                    window_start = now
                    first = offsets(run)
                    beats0 = beats.snapshot()
                    cpu0 = (
                        cpu_seconds([detect.process.pid]),
                        cpu_seconds([s.process.pid for s in ingests]),
                    )
                    busy0 = machine_busy()
                if window_start is not None:
                    last = offsets(run)
                    lag = last[1] - last[0]
                    trial.lags.append((now - window_start, lag))
                    bar.set_postfix(lag=lag, refresh=False)
                    if lag > abort_lag:
                        trial.reasons.append(
                            f"lag {lag} frames after {now - window_start:.0f} s "
                            f"(past 10 s of full-rate input): stopped early"
                        )
                        break
                    if now - window_start >= window_s:
                        break
                bar.update(min(round(now - began), total_s) - bar.n)
                time.sleep(_SAMPLE_EVERY_S)
            bar.close()
            assert window_start is not None
            assert first is not None
            elapsed = time.monotonic() - window_start
            trial.detect_rss_mb = rss_mb([detect.process.pid])
            trial.run_s = time.monotonic() - cameras_started
            trial.window_s = elapsed
            trial.detect_cores = (cpu_seconds([detect.process.pid]) - cpu0[0]) / elapsed
            trial.camera_cores = (cpu_seconds([s.process.pid for s in ingests]) - cpu0[1]) / elapsed
            busy1 = machine_busy()
            trial.machine_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1.0)
            trial.machine_busy *= os.cpu_count() or 1
            trial.detect_fps = (last[2] - first[2]) / elapsed
            trial.input_fps = (last[1] - first[1]) / elapsed
            trial.lag_trend = trend(trial.lags)
            beats1 = beats.snapshot()
            paces = []
            for camera in cameras:
                a, b = beats0.get(str(camera["id"])), beats1.get(str(camera["id"]))
                if a is None or b is None or b.ts_capture <= a.ts_capture:
                    trial.reasons.append(f"{camera['id']}: no heartbeats over the window")
                    continue
                seconds = (b.ts_capture - a.ts_capture).total_seconds()
                paces.append((b.frames_decoded - a.frames_decoded) / seconds / native_fps)
            trial.pace = min(paces) if paces else 0.0
        finally:
            beats.stop()
        for stage in ingests:
            run.stop(stage)
        # Its last stats line comes as it stops.
        run.stop(detect)
        inference = _INFERENCE.findall(detect.tail(10**6))
        trial.inference_ms = float(inference[-1]) if inference else 0.0
        too_old = _TOO_OLD.findall(detect.tail(10**6))
        # Summed over the detector's workers: each logs its own count as it stops.
        trial.too_old = sum(int(count) for count in too_old[-workers:]) if too_old else 0
        # Over the window: frames the detectors committed without a detections message (a
        # commit may run a batch ahead of what was counted, hence the slack).
        trial.too_old_window = max(0, (last[0] - first[0]) - (last[2] - first[2]))
        if trial.too_old_window > max_batch * workers:
            trial.reasons.append(
                f"the detector skipped {trial.too_old_window} frames over the window as too "
                "old (detect.max_frame_age_s)"
            )
        check_cameras(trial, ingests)
        allowed = max(0.3, 0.02 * trial.input_fps)
        if trial.lag_trend > allowed:
            trial.reasons.append(
                f"lag grows {trial.lag_trend:.2f} frames/s (allowed {allowed:.2f})"
            )
        end_lag = trial.lags[-1][1] if trial.lags else 0
        if end_lag > max(2 * trial.input_fps, 2 * max_batch):
            trial.reasons.append(f"lag {end_lag} frames at the end of the window")
        if trial.pace < 0.97:
            trial.reasons.append(
                f"slowest camera decoded at {trial.pace:.0%} of real time (frames lost live)"
            )
    trial.passed = not trial.reasons
    return trial


def check_cameras(trial: Trial, ingests: list[Stage]) -> None:
    """The ingest's own final counters: nothing dropped, failed or reconnected."""
    published = decided = 0
    for stage in ingests:
        text = stage.tail(20_000)
        done = _DONE.search(text)
        if done is None:
            trial.reasons.append(f"{stage.name}: no final counters in its log")
            continue
        for key in ("dropped", "reconnects"):
            if int(done[key]) > 0:
                trial.reasons.append(f"{stage.name}: {key} {done[key]}")
        failed = _FAILED_SENDS.search(text)
        if failed is not None and int(failed[1]) > 0:
            trial.reasons.append(f"{stage.name}: failed sends {failed[1]}")
        published += int(done["published"])
        decided += int(done["published"]) + int(done["gated"])
    trial.gate_share = published / decided if decided else 0.0


def report(trial: Trial, name: str) -> None:
    n = trial.n
    print(f"figure: {name}_n{n}_detect_fps = {trial.detect_fps:.1f} fps")
    print(f"figure: {name}_n{n}_input_fps = {trial.input_fps:.1f} fps")
    print(f"figure: {name}_n{n}_lag_trend = {trial.lag_trend:.2f} frames/s")
    lags = [lag for _, lag in trial.lags]
    print(
        f"N={n}: {'pass' if trial.passed else 'FAIL'} over {trial.window_s:.0f} s; lag "
        f"start {lags[0] if lags else 0}, end {lags[-1] if lags else 0}, max "
        f"{max(lags, default=0)} frames; gate published {trial.gate_share:.0%} of sampled "
        f"frames; slowest camera at {trial.pace:.0%} of real time; detector skipped "
        f"{trial.too_old_window} as too old over the window ({trial.too_old} in the whole run), "
        f"{trial.inference_ms:.0f} ms inference per frame; "
        "CPU cores: detector "
        f"{trial.detect_cores:.2f}, cameras {trial.camera_cores:.2f}, whole machine "
        f"{trial.machine_busy:.2f}; detector RSS {trial.detect_rss_mb:.0f} MB"
        + ("" if trial.passed else "; " + "; ".join(trial.reasons))
    )


def estimate(trials: list[Trial], name: str) -> None:
    """What the CPU the pipeline itself used says, for a machine it had to itself: the cost
    per camera from the largest passing N, against all the machine's cores. Other work on a
    shared machine shows as `whole machine` above what the detector and cameras used."""
    ok = [t for t in trials if t.passed and t.detect_fps > 0]
    if not ok:
        return
    t = max(ok, key=lambda t: t.n)
    per_camera = (t.detect_cores + t.camera_cores) / t.n
    cores = os.cpu_count() or 1
    print(f"figure: {name}_cpu_estimate = {cores / per_camera:.1f} cameras")
    print(
        f"estimate from N={t.n}: detector + cameras used {per_camera:.2f} cores per camera "
        f"({t.detect_cores / t.detect_fps * 1000:.0f} ms detector CPU per frame), "
        f"{cores} cores in all"
    )
    busiest = max(trials, key=lambda t: t.detect_cores)
    print(
        f"one detector process used at most {busiest.detect_cores:.2f} cores (N={busiest.n}, "
        f"{'passing' if busiest.passed else 'falling behind'}); the estimate assumes the "
        "detectors can use every core"
    )
    others = [max(0.0, t.machine_busy - t.detect_cores - t.camera_cores) for t in trials]
    print(
        f"other work on the machine during the windows: {min(others):.2f} to "
        f"{max(others):.2f} cores busy outside this pipeline"
    )


def network_cpu_ms(mode: Mode, seconds: float) -> float:
    """CPU milliseconds per frame of the network alone, as the detector runs it in this mode
    (with regions: the region planning and crops of one camera's frames in order), on the
    clip sampled at 5 fps and 640 wide, timed in this process with nothing else running in
    it, for about `seconds` of CPU after a warm-up frame."""
    settings = load_settings(BASE_CONFIG, {**base_environ(), **mode.overrides()})
    detector = settings.detector
    assert detector is not None
    backend = load_backend(detector)
    regions = (
        RegionDetector(
            backend,
            settings.detect.regions,
            detector.imgsz,
            iou=detector.iou,
            classes=kept_classes(detector, settings.dumping, backend.names),
        )
        if mode.regions
        else None
    )
    frames = [image for _, image in sampled_frames(CLIP, FPS, 640, seconds=60.0)]
    backend.detect(frames[:1])
    done, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        image = frames[done % len(frames)]
        if regions is not None:
            regions.detect([Frame("network-alone", done / FPS, image)])
        else:
            backend.detect([image])
        done += 1
    return (time.process_time() - started) * 1000.0 / done


def efficiency(
    trials: list[Trial], cameras: int, name: str, suffix: str, network_ms: float
) -> None:
    """The cameras served against the ceiling the network's own cost sets, from the trial
    at the largest passing N (the smallest N tried when none passed)."""
    if not trials:
        return
    ok = [t for t in trials if t.passed]
    t = max(ok, key=lambda t: t.n) if ok else min(trials, key=lambda t: t.n)
    cores = os.cpu_count() or 1
    share = t.gate_share
    ceiling = cores * 1000 / (FPS * share * network_ms) if network_ms > 0 and share > 0 else 0.0
    print(f"figure: {name}_network_cpu_ms_per_frame = {network_ms:.1f} ms")
    print(f"figure: {name}_detector_cpu_ms_per_frame = {t.detect_cpu_ms_per_frame:.1f} ms")
    print(f"figure: {name}_published_share = {share:.2f}")
    if ceiling:
        print(f"figure: {name}_ceiling = {ceiling:.1f} cameras")
        print(f"figure: pipeline_efficiency{suffix} = {cameras / ceiling:.2f} x")
        print(
            f"ceiling: {cores} cores * 1000 ms / ({FPS:g} fps * {share:.2f} published at N={t.n} "
            f"* {network_ms:.1f} ms of network CPU a frame); the detect process spent "
            f"{t.detect_cpu_ms_per_frame:.1f} ms a frame in all (network, JPEG decoding, "
            f"tracking, dumping logic, evidence, Kafka); the window's input was "
            f"{t.input_fps / (FPS * t.n):.0%} of {FPS:g} fps per camera"
        )
    else:
        print(f"no ceiling from N={t.n}: the detector detected no frame or the gate let none by")
    print(
        f"detector RSS at N={t.n}: {t.detect_rss_mb:.0f} MB ({t.detect_rss_mb / t.n:.0f} MB over "
        f"{t.n} cameras), {t.run_s:.0f} s after the cameras started, when the evidence ring "
        f"buffers ({t.evidence_buffer_s:g} s) were not yet full; bench/detector_memory.py "
        "measures the memory per camera with them full"
    )


def search(mode: Mode, args: argparse.Namespace) -> int:
    """The doubling and bisecting search of one mode, within `--budget-s`, with its
    figures; the largest passing N."""
    started = time.monotonic()
    per_trial = args.warmup_s + args.window_s + _OVERHEAD_S
    passed, failed = 0, None
    cut_short = False
    trials: list[Trial] = []
    detector = {**mode.overrides(), "PANTAU__DETECT__WORKERS": str(args.detect_workers)}
    name = f"cameras_at_5fps{mode.suffix}"
    print(
        f"detector: {detector.get('PANTAU__DETECTOR__MODEL', 'as configured')} at "
        f"{mode.imgsz}" + (", regions around motion" if mode.regions else ", whole frames")
    )
    n = args.start_n
    while True:
        if time.monotonic() - started + per_trial > args.budget_s:
            cut_short = True
            break
        trial = run_trial(n, args.warmup_s, args.window_s, detector)
        report(trial, name)
        trials.append(trial)
        if trial.passed:
            passed = n
        else:
            failed = n
        if failed is None:
            if n >= args.max_n:
                break
            n = min(2 * n, args.max_n)
        else:
            if failed - passed <= 1:
                break
            n = (passed + failed) // 2
    print(f"figure: {name} = {passed} cameras")
    estimate(trials, name)
    efficiency(trials, passed, name, mode.suffix, network_cpu_ms(mode, args.network_s))
    bound = f"fails at {failed}" if failed is not None else f"no failure up to {args.max_n}"
    print(
        f"largest passing N {passed} ({bound}); {os.cpu_count()} cores; window "
        f"{args.window_s:.0f} s after {args.warmup_s:.0f} s warm-up"
        + ("; the search stopped early: no room left in the time budget" if cut_short else "")
        + f"; took {time.monotonic() - started:.0f} s"
    )
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument(
        "--budget-s", type=float, default=690.0, help="stop searching after (each search)"
    )
    parser.add_argument("--max-n", type=int, default=64)
    parser.add_argument(
        "--detect-workers",
        type=int,
        default=1,
        help="detector processes in the group (detect.workers)",
    )
    parser.add_argument(
        "--network-s", type=float, default=15.0, help="CPU seconds timing the network alone"
    )
    parser.add_argument("--start-n", type=int, default=8, help="first N of the doubling search")
    parser.add_argument(
        "--mode",
        choices=(*MODES, *COMPARISONS),
        help="320 (the default), 640, regions (320 on crops around motion), or "
        "regions-vs-640 (both searches and their ratio)",
    )
    parser.add_argument(
        "--imgsz",
        type=int,
        choices=(320, 640),
        help="the same as --mode 320 or --mode 640",
    )
    args = parser.parse_args()
    if args.imgsz is not None and args.mode not in (None, str(args.imgsz)):
        parser.error(f"--imgsz {args.imgsz} contradicts --mode {args.mode}")
    chosen: str = args.mode or (str(args.imgsz) if args.imgsz is not None else "320")
    stop_on_sigterm()

    if chosen in MODES:
        search(MODES[chosen], args)
        return 0
    base, other = COMPARISONS[chosen]
    cameras = {key: search(MODES[key], args) for key in (base, other)}
    if cameras[base]:
        print(f"figure: cameras_at_5fps_{other}_vs_{base} = {cameras[other] / cameras[base]:.2f} x")
    else:
        print(f"no cameras_at_5fps_{other}_vs_{base}: no N passed at {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
