"""`pantau demo`: the whole pipeline for about a minute, on this machine, then a summary.

Starts the development services, applies the schema, then runs every stage as its own
`pantau` process — exactly as a deployment runs them — with the shared sample clip as a
camera and simulated sensors over MQTT (a few payloads deliberately malformed). When the
sources stop, it waits for the detector and the sink to catch up, stops them, and reports
what went in and what was stored. One annotated frame is written as a PNG.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from pantau import kafka, services
from pantau.commands import Context, SubParsers
from pantau.ids import utcnow
from pantau.settings import Settings
from pantau.topics import Topics

_DRAIN_TIMEOUT_S = 180.0


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline for a minute and summarise it")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of camera and sensors"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <state dir>/demo)")
    parser.add_argument(
        "--malformed-every",
        type=int,
        default=40,
        metavar="N",
        help="every Nth sensor payload is bad",
    )
    parser.set_defaults(handler=_handle)


@dataclass
class Stage:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 15) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class DemoError(RuntimeError):
    pass


class Demo:
    def __init__(self, ctx: Context, settings: Settings, out: Path, duration: float) -> None:
        self.ctx = ctx
        self.settings = settings
        self.out = out
        self.duration = duration
        self.topics = Topics(settings.kafka)
        self.stages: dict[str, Stage] = {}

    # ------------------------------------------------------------------ processes

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pantau.cli", "--config", str(self.ctx.config_path), *args]

    def start(self, name: str, *args: str) -> Stage:
        log_path = self.out / "logs" / f"{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            self.command(*args), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        stage = Stage(name, process, log_path, log_file)
        self.stages[name] = stage
        return stage

    def check_alive(self, *names: str) -> None:
        for name in names:
            stage = self.stages[name]
            code = stage.process.poll()
            if code is not None and code != 0:
                raise DemoError(f"{name} exited with code {code}:\n{stage.tail()}")

    def stop(self, name: str, timeout: float = 60.0) -> int:
        stage = self.stages[name]
        if stage.process.poll() is None:
            stage.process.send_signal(signal.SIGTERM)
        try:
            code = stage.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stage.process.kill()
            code = stage.process.wait()
        stage.log_file.close()
        return code

    def stop_all(self) -> None:
        for name in reversed(list(self.stages)):
            if not self.stages[name].log_file.closed:
                self.stop(name, timeout=20)

    # ------------------------------------------------------------------ counts

    def counted_topics(self) -> dict[str, str]:
        t = self.topics
        names = {
            "frames": t.frames,
            "detections": t.detections,
            "readings": t.readings,
            "heartbeats": t.camera_health,
        }
        for topic in t.data_topics():
            names[f"dead letters ({topic})"] = t.dead_letters(topic)
        return names

    def counts(self) -> dict[str, int]:
        names = self.counted_topics()
        raw = kafka.message_counts(self.settings.kafka, names.values())
        return {label: raw[topic] for label, topic in names.items()}

    # ------------------------------------------------------------------ run

    def run(self, malformed_every: int) -> dict[str, Any]:
        print("pantau demo: starting services (the first run installs them)", flush=True)
        services.up(self.settings)
        migrate = subprocess.run(self.command("migrate"), capture_output=True, text=True)
        if migrate.returncode != 0:
            raise DemoError(f"migrate failed:\n{migrate.stderr}")
        print(migrate.stdout.strip(), flush=True)

        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        snapshots = self.out / "snapshots"
        shutil.rmtree(snapshots, ignore_errors=True)
        since = utcnow()
        before = self.counts()

        print("starting sink, detector, sensor ingest; loading the model…", flush=True)
        self.start("sink", "sink")
        self.start("detect", "detect", "--snapshot-dir", str(snapshots))
        self.start("ingest-sensors", "ingest", "sensors")
        self._wait_for_detector()
        self.start("ingest-camera", "ingest", "camera", "--duration", str(self.duration))
        self.start(
            "simulate-sensors",
            "simulate",
            "sensors",
            "--duration",
            str(self.duration),
            "--malformed-every",
            str(malformed_every),
        )
        started = time.monotonic()
        self._progress(before)
        for name in ("ingest-camera", "simulate-sensors"):
            code = self.stop(name, timeout=self.duration + 60)
            if code != 0:
                raise DemoError(f"{name} exited with code {code}:\n{self.stages[name].tail()}")
        sources_done = time.monotonic()
        self._drain()
        drained = time.monotonic()
        for name in ("ingest-sensors", "detect", "sink"):
            self.stop(name)
        after = self.counts()

        stats = subprocess.run(
            self.command("db", "stats", "--since", since.isoformat(), "--json"),
            capture_output=True,
            text=True,
        )
        if stats.returncode != 0:
            raise DemoError(f"db stats failed:\n{stats.stderr}")
        delta = {k: after[k] - before.get(k, 0) for k in after}
        annotated = self._annotated_frame(snapshots)
        return {
            "kafka": delta,
            "db": json.loads(stats.stdout),
            "camera_s": sources_done - started,
            "pipeline_s": drained - started,
            "drain_s": drained - sources_done,
            "annotated": annotated,
            "detector_line": self._last_line("detect", "detector:"),
            "camera_line": self._last_line("ingest-camera", "camera "),
            "logs": self.out / "logs",
        }

    def _wait_for_detector(self) -> None:
        # The model loads in a few seconds; frames published meanwhile would queue up anyway,
        # but starting the camera after makes the frame rate figures honest.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.check_alive("sink", "detect", "ingest-sensors")
            if "ready in" in self.stages["detect"].log_path.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise DemoError("the detector did not load its model within 120 s")

    def _progress(self, before: dict[str, int]) -> None:
        total = round(self.duration)
        bar = tqdm(total=total, unit="s", desc="demo", file=sys.stdout)
        shown = 0
        started = time.monotonic()
        while self.stages["ingest-camera"].process.poll() is None or (
            self.stages["simulate-sensors"].process.poll() is None
        ):
            time.sleep(1.0)
            self.check_alive(
                "sink", "detect", "ingest-sensors", "ingest-camera", "simulate-sensors"
            )
            now = self.counts()
            bar.set_postfix(
                frames=now["frames"] - before.get("frames", 0),
                detected=now["detections"] - before.get("detections", 0),
                readings=now["readings"] - before.get("readings", 0),
                refresh=False,
            )
            elapsed = min(round(time.monotonic() - started), total)
            bar.update(elapsed - shown)
            shown = elapsed
        bar.update(total - shown)
        bar.close()

    def _drain(self) -> None:
        topics = self.topics
        sink_topics = [topics.readings, topics.detections, topics.camera_health]
        sink_topics += topics.all_dead_letter_topics()
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        bar = tqdm(desc="catching up", bar_format="{desc}: {elapsed} {postfix}", file=sys.stdout)
        while time.monotonic() < deadline:
            self.check_alive("sink", "detect", "ingest-sensors")
            detect_lag = kafka.group_lag(
                self.settings.kafka, self.settings.detect.group_id, [topics.frames]
            )
            sink_lag = kafka.group_lag(
                self.settings.kafka, self.settings.sink.group_id, sink_topics
            )
            bar.set_postfix(detector_lag=detect_lag, sink_lag=sink_lag, refresh=True)
            if detect_lag == 0 and sink_lag == 0:
                bar.close()
                return
            time.sleep(1.0)
        bar.close()
        raise DemoError(f"the detector or sink did not catch up within {_DRAIN_TIMEOUT_S:.0f} s")

    def _annotated_frame(self, snapshots: Path) -> Path | None:
        pictures = sorted(snapshots.glob("*.png"), key=lambda p: p.stat().st_mtime)
        if not pictures:
            return None
        target = self.out / "annotated-frame.png"
        shutil.copyfile(pictures[-1], target)
        return target

    def _last_line(self, stage: str, prefix: str) -> str:
        lines = self.stages[stage].log_path.read_text(errors="replace").splitlines()
        matching = [line for line in lines if line.startswith(prefix)]
        return matching[-1] if matching else ""


def format_summary(result: dict[str, Any]) -> str:
    k = result["kafka"]
    db = result["db"]
    frames = k["frames"]
    camera_fps = frames / max(result["camera_s"], 1e-6)
    detect_fps = k["detections"] / max(result["pipeline_s"], 1e-6)
    dead_kafka = sum(v for name, v in k.items() if name.startswith("dead letters"))
    lines = [
        "",
        "Pantau demo — summary",
        "=====================",
        f"frames in (published by the camera)   {frames:>7}   ({camera_fps:.1f} frames/s)",
        f"frames detected                       {k['detections']:>7}   "
        f"({detect_fps:.1f} frames/s end to end)",
        f"camera heartbeats                     {k['heartbeats']:>7}",
        f"sensor readings accepted              {k['readings']:>7}",
        f"dead letters                          {dead_kafka:>7}",
        "",
        "detections by class (stored):",
    ]
    by_label = db["detections_by_label"] or {"(none)": 0}
    lines += [f"  {label:<20} {count:>7}" for label, count in by_label.items()]
    lines += ["", "sensor values stored, by quantity:"]
    lines += [f"  {q:<20} {n:>7}" for q, n in db["readings_by_quantity"].items()]
    lines += ["", "dead letters by reason:"]
    reasons = db.get("dead_letter_reasons") or []
    lines += [f"  {r['count']:>4} x [{r['stage']}] {r['error'][:120]}" for r in reasons] or [
        "  none"
    ]
    lines += ["", "rows stored in PostgreSQL (this run / table total):"]
    lines += [
        f"  {table:<20} {db['rows_since'][table]:>7} / {total}"
        for table, total in db["rows_total"].items()
    ]
    lines += [""]
    if result["detector_line"]:
        lines.append(result["detector_line"])
    if result["camera_line"]:
        lines.append(result["camera_line"])
    lines.append(f"caught up {result['drain_s']:.1f} s after the sources stopped")
    if result["annotated"] is not None:
        lines.append(f"annotated frame: {result['annotated']}")
    else:
        lines.append("annotated frame: none (no detections)")
    lines.append(f"logs of every stage: {result['logs']}")
    return "\n".join(lines)


def _handle(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    if not settings.cameras or not settings.sensors or settings.detector is None:
        print("pantau demo: the settings need a camera, sensors and a detector", file=sys.stderr)
        return 2
    out = args.out or settings.services.state_dir / "demo"
    demo = Demo(ctx, settings, out, args.duration)
    try:
        result = demo.run(args.malformed_every)
    except (DemoError, services.ServicesError, kafka.KafkaUnavailable) as exc:
        print(f"pantau demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop_all()
    print(format_summary(result))
    return 0
