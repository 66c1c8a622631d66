"""Subcommands of the streams stage: `streams` (the faust worker), `notify` (the notifier),
`telegram` (the bot DLH staff answer on), `alarm ack|dispatch|resolve|false-positive|comment|
assign` (operator decisions)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from uuid import UUID

from pantau.commands import Context, SubParsers, supervised

log = logging.getLogger(__name__)

_ACTIONS = {
    "ack": "ack",
    "dispatch": "dispatch",
    "resolve": "resolve",
    "false-positive": "false_positive",
    "comment": "comment",
    "assign": "assign",
}
_REASONS = ("not_rubbish", "belongs_there", "person_present", "camera_moved", "other")


def register(sub: SubParsers) -> None:
    from streams import risk_summary

    # `pantau risk summary`: the weekly hotspot-risk message to the head of the DLH.
    risk_summary.register(sub)
    streams = sub.add_parser(
        "streams", help="run the stream processor: reading windows, rules, camera health, alarms"
    )
    supervised(streams, "streams")
    streams.add_argument(
        "--worker",
        action="store_const",
        const=False,
        dest="supervise",
        help="run the faust worker in this process, unsupervised (as --no-supervise)",
    )
    streams.set_defaults(handler=_streams)

    notify = sub.add_parser("notify", help="deliver alarm notifications (Telegram, email, webhook)")
    notify.add_argument("--duration", type=float, help="stop after this many seconds")
    notify.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="stop once nothing is left to send"
    )
    supervised(notify, "notify")
    notify.set_defaults(handler=_notify)

    telegram = sub.add_parser(
        "telegram",
        help="the Telegram bot: DLH staff press Terima, Berangkat, Selesai, Alarm keliru",
    )
    telegram.add_argument("--duration", type=float, help="stop after this many seconds")
    supervised(telegram, "telegram")
    telegram.set_defaults(handler=_telegram)

    alarm = sub.add_parser("alarm", help="record an operator's decision on an alarm")
    alarm.add_argument("action", choices=sorted(_ACTIONS))
    alarm.add_argument("alarm_id", type=UUID)
    alarm.add_argument("--by", default="", help="who decided (shown in the alarm's history)")
    alarm.add_argument("--note", default="", help="a note (a comment's text)")
    alarm.add_argument("--to", default=None, help="dispatch: the team sent; assign: the user")
    alarm.add_argument("--reason", choices=_REASONS, default=None, help="why a false positive")
    alarm.set_defaults(handler=_alarm)


def _streams(args: argparse.Namespace, ctx: Context) -> int:
    """The faust worker, in this process. `pantau streams` runs it as a supervised worker
    (pantau/supervisor.py), which starts a fresh one when it exits on a stalled partition."""
    from faust import Worker

    from pantau import kafka
    from pantau.runtime import tune_gc_for_throughput
    from pantau.topics import Topics
    from streams.app import StreamsApp

    settings = ctx.settings
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
    settings.streams.data_dir.mkdir(parents=True, exist_ok=True)
    streams = StreamsApp(settings)
    worker = Worker(
        streams.app,
        loglevel=settings.logging.level.lower(),
        quiet=True,
        # The entry point configured logging already (credential scrubbing included).
        override_logging=False,
    )
    # Worker parses no arguments of its own here; it stops on SIGTERM/SIGINT after a commit.
    sys.argv = sys.argv[:1]
    tune_gc_for_throughput()
    worker.execute_from_commandline()
    return 0


def _telegram(args: argparse.Namespace, ctx: Context) -> int:
    from pantau.runtime import stop_after, stop_on_signals
    from streams.telegram import run

    stop = stop_on_signals()
    stop_after(stop, args.duration)
    return run(ctx.settings, stop)


def _notify(args: argparse.Namespace, ctx: Context) -> int:
    from pantau.runtime import stop_after, stop_on_signals
    from streams.notifier import build

    stop = stop_on_signals()
    stop_after(stop, args.duration)
    notifier = build(ctx.settings)
    try:
        stats = notifier.run(stop, idle_exit_s=args.idle_exit)
    finally:
        notifier.close()
    print(
        f"notify: {stats.alerts} alerts read, {stats.queued} notifications queued, "
        f"{stats.sent} sent, {stats.failed} failed, {stats.retried} retries"
    )
    return 0


def _alarm(args: argparse.Namespace, ctx: Context) -> int:
    import psycopg

    from pantau import kafka
    from pantau.ids import SeqCounter, uuid7
    from pantau.messages import AlarmAction
    from pantau.topics import Topics

    settings = ctx.settings
    # The action goes to the partition that holds the alarm's source, so it needs the source.
    with psycopg.connect(**settings.postgres.connect_kwargs("owner")) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT source_kind, source_id, state FROM alerts WHERE alarm_id = %s "
            "ORDER BY version DESC LIMIT 1",
            (args.alarm_id,),
        ).fetchone()
    if row is None:
        print(f"pantau alarm: no alarm {args.alarm_id} in the database", file=sys.stderr)
        return 1
    source_kind, source_id, state = row
    action = AlarmAction(
        id=uuid7(),
        ts_capture=datetime.now(UTC),
        seq=next(SeqCounter()),
        action=_ACTIONS[args.action],
        source_kind=source_kind,
        source_id=source_id,
        alarm_id=args.alarm_id,
        by=args.by,
        note=args.note,
        device="cli",
        to=args.to,
        reason=args.reason,
    )
    producer = kafka.producer(settings.kafka, "alarm-cli")
    try:
        kafka.publish(producer, Topics(settings.kafka).alarm_actions, action).get(timeout=30)
    finally:
        producer.close()
    print(f"{args.action} sent for alarm {args.alarm_id} ({source_id}, now {state})")
    return 0
