"""Subcommands of the ingest stage: `ingest camera|sensors|http`, `simulate sensors`."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from ingest.assignment import cameras_of
from pantau import kafka
from pantau.commands import Context, SubParsers, supervised
from pantau.runtime import alive, stop_after, stop_on_signals
from pantau.topics import Topics

log = logging.getLogger(__name__)


def register(sub: SubParsers) -> None:
    ingest = sub.add_parser("ingest", help="cameras and sensors into Kafka")
    which = ingest.add_subparsers(dest="ingest_command", required=True, metavar="SOURCE")

    camera = which.add_parser("camera", help="capture, sample and publish camera frames")
    camera.add_argument(
        "--camera", action="append", dest="cameras", metavar="ID", help="camera id (repeatable)"
    )
    camera.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="play video files at their own pace, like a camera (default: on)",
    )
    camera.add_argument("--loop", action="store_true", help="restart video files at their end")
    camera.add_argument("--max-frames", type=int, help="stop after publishing this many frames")
    camera.add_argument("--start-s", type=float, default=0.0, help="start this far into a file")
    camera.add_argument("--duration", type=float, help="stop after this many seconds")
    camera.add_argument(
        "--member",
        metavar="K/N",
        type=_member,
        help="this process is member K (from 0) of N sharing the enabled cameras (default: "
        "ingest.camera_member / ingest.camera_members); each camera is taken by one member",
    )
    supervised(camera, "ingest-camera")
    camera.set_defaults(handler=_camera)

    sensors = which.add_parser("sensors", help="MQTT sensor readings into Kafka")
    sensors.add_argument("--duration", type=float, help="stop after this many seconds")
    sensors.add_argument(
        "--member",
        type=int,
        metavar="K",
        help="with mqtt.shared_group: this process's number in the group (default: mqtt.member)",
    )
    supervised(sensors, "ingest-sensors")
    sensors.set_defaults(handler=_sensors)

    http = which.add_parser("http", help="sensor readings POSTed over HTTP into Kafka")
    http.add_argument("--host", help="listen address (default: ingest.http_host)")
    http.add_argument("--port", type=int, help="listen port (default: ingest.http_port)")
    http.add_argument("--duration", type=float, help="stop after this many seconds")
    supervised(http, "ingest-http")
    http.set_defaults(handler=_http)

    simulate = sub.add_parser("simulate", help="simulated sources")
    what = simulate.add_subparsers(dest="simulate_command", required=True, metavar="WHAT")
    sim = what.add_parser("sensors", help="publish realistic sensor readings to MQTT")
    sim.add_argument("--duration", type=float, help="seconds to run (default: until stopped)")
    sim.add_argument("--rate", type=float, default=1.0, help="readings per second per sensor")
    sim.add_argument(
        "--malformed-every", type=int, default=0, metavar="N", help="make every Nth payload invalid"
    )
    sim.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    sim.set_defaults(handler=_simulate)


def _member(text: str) -> tuple[int, int]:
    member, slash, members = text.partition("/")
    try:
        k, n = int(member), int(members)
    except ValueError:
        k = n = -1
    if not slash or n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, e.g. 0/3; got {text!r}")
    return k, n


def _camera(args: argparse.Namespace, ctx: Context) -> int:
    from ingest.camera import CameraIngest

    settings = ctx.settings
    member, members = args.member or (
        settings.ingest.camera_member,
        settings.ingest.camera_members,
    )
    if args.cameras:
        chosen = [settings.camera(c) for c in args.cameras]
    else:
        enabled = [c for c in settings.cameras if c.enabled]
        mine = set(cameras_of([c.id for c in enabled], member, members))
        chosen = [c for c in enabled if c.id in mine]
        if members > 1:
            log.info(
                "member %d of %d: %d of %d cameras (%s)",
                member, members, len(chosen), len(enabled),
                ", ".join(c.id for c in chosen) or "none",
            )  # fmt: skip
            if not chosen and enabled:
                # A member with nothing to do now is still a member: it idles until stopped,
                # so the set keeps its size (and its assignment) as configured.
                stop = stop_on_signals()
                stop_after(stop, args.duration)
                while not stop.wait(1.0):
                    alive()
                return 0
    if not chosen:
        print("pantau ingest camera: no camera configured", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    # Frames that cannot be sent within a second are dropped and counted (see CameraIngest).
    producer = kafka.producer(settings.kafka, "ingest-camera", max_block_ms=1000)
    runners = [
        CameraIngest(
            camera,
            settings.ingest,
            producer,
            topics,
            max_message_bytes=settings.kafka.max_message_bytes,
            realtime=args.realtime,
            loop=args.loop,
            max_frames=args.max_frames,
            start_s=args.start_s,
        )
        for camera in chosen
    ]
    threads = [
        threading.Thread(target=r.run, args=(stop,), name=f"camera-{r.camera.id}") for r in runners
    ]
    for thread in threads:
        thread.start()
    stop_after(stop, args.duration)
    while any(t.is_alive() for t in threads):
        alive()
        for thread in threads:
            thread.join(timeout=0.5)
    stop.set()
    producer.flush(timeout=30)
    producer.close(timeout=10)
    for r in runners:
        s = r.stats
        print(
            f"camera {r.camera.id}: decoded {s.decoded}, published {s.published}, "
            f"skipped {s.skipped}, reconnects {s.reconnects}, failed sends {s.failed_sends}; "
            f"motion gate: {s.gate_summary()}"
        )
    # Frames Kafka could not take in time were dropped on purpose (the detect stream is only
    # worth its fresh frames) and are counted above and in the heartbeats: the run still did
    # its work. A non-zero exit would make the supervisor play a finished file again.
    return 0


def _sensors(args: argparse.Namespace, ctx: Context) -> int:
    from ingest.sensors import run_mqtt_ingest

    settings = ctx.settings
    if args.member is not None:
        if args.member < 0:
            print("pantau ingest sensors: --member counts from 0", file=sys.stderr)
            return 2
        mqtt = settings.mqtt.model_copy(update={"member": args.member})
        settings = settings.model_copy(update={"mqtt": mqtt})
    stop = stop_on_signals()
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    producer = kafka.producer(settings.kafka, "ingest-sensors")
    stop_after(stop, args.duration)
    try:
        stats = run_mqtt_ingest(settings, producer, topics, stop, alive=alive)
    except RuntimeError as exc:
        print(f"pantau ingest sensors: {exc}", file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=10)
    print(f"sensors: accepted {stats.accepted}, rejected {stats.rejected} (dead-lettered)")
    return 0


def _http(args: argparse.Namespace, ctx: Context) -> int:
    from ingest.http import ListenFailed, http_producer, run_http_ingest, tls_context

    settings = ctx.settings
    host = args.host if args.host is not None else settings.ingest.http_host
    port = args.port if args.port is not None else settings.ingest.http_port
    try:
        # A certificate or key that cannot be used is said at once, not after Kafka answers.
        tls_context(settings.ingest)
    except ListenFailed as exc:
        print(f"pantau ingest http: {exc}", file=sys.stderr)
        return 1
    stop = stop_on_signals()
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    producer = http_producer(settings.kafka)
    stop_after(stop, args.duration)
    try:
        counts = run_http_ingest(
            settings, producer, topics, stop, host=host, port=port, alive=alive
        )
    except ListenFailed as exc:
        print(f"pantau ingest http: {exc}", file=sys.stderr)
        return 1
    finally:
        producer.flush(timeout=30)
        producer.close(timeout=10)
    print(f"http: {counts}")
    return 0


def _simulate(args: argparse.Namespace, ctx: Context) -> int:
    from tqdm import tqdm

    from ingest.simulate import SimulationReport, run_simulator

    settings = ctx.settings
    if not settings.sensors:
        print("pantau simulate sensors: no sensors configured", file=sys.stderr)
        return 2
    if args.rate <= 0:
        print("pantau simulate sensors: --rate must be positive", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    bar = tqdm(desc="simulated readings", unit="msg", disable=not sys.stderr.isatty())
    shown = 0

    def progress(report: SimulationReport) -> None:
        nonlocal shown
        bar.update(report.published - shown)
        shown = report.published

    report = run_simulator(
        settings,
        stop,
        duration_s=args.duration,
        rate_hz=args.rate,
        malformed_every=args.malformed_every,
        seed=args.seed,
        on_tick=progress,
    )
    bar.close()
    print(f"simulator: published {report.published} payloads ({report.malformed} malformed)")
    return 0
