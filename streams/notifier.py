"""The notifier: alarm states from `alerts.v1` → an outbox in PostgreSQL → Telegram, email and
webhooks, with retries.

Two halves, one process:

- Queueing. Each alert version that people should hear about (`notify`) becomes one outbox
  row per recipient, its id derived from (alarm, version, channel, target). Rows are inserted
  with ON CONFLICT DO NOTHING and the Kafka offsets are committed only after the database
  commit, so an alert re-delivered after a crash of the stream processor, the broker or this
  process queues nothing twice and an alert is never skipped.
- Delivery. Due rows are claimed one at a time (FOR UPDATE SKIP LOCKED, so several notifiers
  may share the outbox), sent, and marked sent in the same transaction; a failure is retried
  with exponential back-off until `notify.max_attempts`, then marked failed. Every outcome is
  published to `notifications.v1` for the delivery log and the latency panels.

The one window left: a crash after a channel accepted a message and before its row is marked
sent sends it again on restart. Webhooks carry an Idempotency-Key and emails a Message-ID
derived from the notification id, so receivers that care can drop the repeat.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from kafka import KafkaProducer
from psycopg.rows import dict_row

from pantau import kafka
from pantau.codec import decode_as, describe
from pantau.failpoints import Failpoints
from pantau.ids import stable_id
from pantau.kafka import BatchConsumer, Record, open_consumer
from pantau.messages import Alert, Notification
from pantau.poison import guard
from pantau.runtime import alive
from pantau.settings import NotifySettings, Settings
from pantau.topics import Topics
from streams.channels import Channels, DeliveryError, SentMessage
from streams.routing import Delivery, deliveries_for, redact_recipient
from streams.templates import render

log = logging.getLogger(__name__)

COMPONENT = "notify"


@dataclass
class NotifierStats:
    alerts: int = 0
    queued: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    dead_letters: int = 0


def notification_id(alert: Alert, delivery: Delivery) -> UUID:
    return stable_id(
        "notification", alert.alarm_id, alert.version, delivery.channel, delivery.recipient
    )


@dataclass(frozen=True)
class Step:
    """What becomes of a delivery after a try: sent, failed for good, or tried again later."""

    status: Literal["sent", "failed", "pending"]
    retry_in_s: float = 0.0


def next_step(attempts: int, error: DeliveryError | None, notify: NotifySettings) -> Step:
    """After the `attempts`-th try of a delivery that raised `error` (None: it went out).

    A retryable failure waits retry_initial_s, doubling per attempt up to retry_max_s, or as
    long as the channel asked (Retry-After) when that is longer; a failure the channel calls
    final, or the max_attempts-th, gives up."""
    if error is None:
        return Step("sent")
    if not error.retryable or attempts >= notify.max_attempts:
        return Step("failed")
    delay = min(notify.retry_max_s, notify.retry_initial_s * 2 ** (attempts - 1))
    if error.retry_after_s is not None:
        delay = max(delay, error.retry_after_s)
    return Step("pending", delay)


class Notifier:
    def __init__(
        self,
        settings: Settings,
        consumer: BatchConsumer,
        producer: KafkaProducer,
        conninfo: dict[str, Any],
        channels: Channels,
        *,
        failpoints: Failpoints | None = None,
    ) -> None:
        self._notify = settings.notify
        self._tz = ZoneInfo(settings.timezone)
        self._topics = Topics(settings.kafka)
        self._consumer = consumer
        self._producer = producer
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None
        self._channels = channels
        self._dead_letters = kafka.DeadLetters(producer, stage=COMPONENT)
        self._failpoints = failpoints or Failpoints()
        self.stats = NotifierStats()

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> NotifierStats:
        idle_since = time.monotonic()
        while not stop.is_set():
            alive()
            records = self._consumer.poll(500, 0.2)
            if records:
                self._queue(records)
                idle_since = time.monotonic()
            delivered = self._deliver_due(stop)
            if delivered:
                idle_since = time.monotonic()
            if (
                idle_exit_s is not None
                and time.monotonic() - idle_since >= idle_exit_s
                and self._consumer.has_assignment()
                and self._pending() == 0
            ):
                break
        self._producer.flush(timeout=30)
        return self.stats

    def close(self) -> None:
        self._producer.flush(timeout=30)
        self._consumer.close()
        self._producer.close()
        if self._conn is not None:
            self._conn.close()

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._conninfo, row_factory=dict_row)
        return self._conn

    # ------------------------------------------------------------------ queueing

    def _queue(self, records: list[Record]) -> None:
        rows: list[tuple[Record, tuple[Any, ...]]] = []
        for record in records:
            reasons: list[str] = []
            prepared = guard(
                partial(self._outbox_rows, record),
                reasons.append,
                where=f"{record.topic}[{record.partition}]@{record.offset}",
            )
            if prepared is None:
                self._dead_letter(record, reasons[0])
                continue
            rows.extend((record, row) for row in prepared)
        conn = self._db()
        with conn.transaction(), conn.cursor() as cur:
            queued = 0
            for record, row in rows:
                try:
                    # A savepoint per row: one row the database refuses is that alert's dead
                    # letter, not the end of the batch (the contract makes it rare).
                    with conn.transaction():
                        cur.execute(
                            "INSERT INTO notification_outbox (notification_id, alarm_id, "
                            "alarm_version, route, channel, target, recipient, alert) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                            "ON CONFLICT (notification_id) DO NOTHING",
                            row,
                        )
                        queued += max(cur.rowcount, 0)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                    self._dead_letter(record, f"outbox refused it: {describe(exc)}")
        self.stats.queued += queued
        self._failpoints.hit("notify.after_queue")
        # Dead letters must be on the broker before the offsets that produced them move on.
        self._producer.flush()
        self._consumer.commit(records)

    def _outbox_rows(self, record: Record) -> list[tuple[Any, ...]]:
        """The outbox rows of one alert record: one per recipient of a change people should
        hear about, none otherwise. Raises for a record that is not a usable alert."""
        alert = decode_as(record.value or b"", Alert)
        self.stats.alerts += 1
        if not alert.notify:
            return []
        # Quiet hours are judged at the time of the change, so a replay decides the same.
        return [
            (
                notification_id(alert, delivery),
                alert.alarm_id,
                alert.version,
                delivery.route,
                delivery.channel,
                delivery.recipient,
                redact_recipient(delivery),
                json.dumps(alert.model_dump(mode="json")),
            )
            for delivery in deliveries_for(alert, self._notify, now=alert.updated_at, tz=self._tz)
        ]

    def _dead_letter(self, record: Record, error: str) -> None:
        self._dead_letters.reject(record, error)
        self.stats.dead_letters += 1

    # ------------------------------------------------------------------ delivery

    def _pending(self) -> int:
        conn = self._db()
        row = conn.execute(
            "SELECT count(*) AS n FROM notification_outbox WHERE status = 'pending'"
        ).fetchone()
        conn.commit()
        return int(row["n"]) if row else 0

    def _deliver_due(self, stop: threading.Event) -> int:
        done = 0
        while not stop.is_set() and self._deliver_one():
            done += 1
        return done

    def _deliver_one(self) -> bool:
        conn = self._db()
        with conn.transaction():
            row = conn.execute(
                "SELECT * FROM notification_outbox WHERE status = 'pending' "
                "AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 "
                "FOR UPDATE SKIP LOCKED"
            ).fetchone()
            if row is None:
                return False
            alert = Alert.model_validate(row["alert"])
            delivery = Delivery(route=row["route"], channel=row["channel"], recipient=row["target"])
            attempts = row["attempts"] + 1
            error: DeliveryError | None = None
            sent: SentMessage | None = None
            try:
                rendered = render(
                    alert,
                    language=self._notify.language,
                    tz=self._tz,
                    incident_url=self._notify.incident_url,
                )
                sent = self._channels.send(
                    delivery, alert, rendered, notification_id=row["notification_id"]
                )
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                # Not the channel's fault: this alert cannot be rendered or sent at all. It is
                # marked failed with the reason instead of stopping every delivery behind it.
                log.error(
                    "notification %s cannot be delivered: %s",
                    row["notification_id"],
                    describe(exc),
                    exc_info=exc,
                )
                error = DeliveryError(describe(exc), retryable=False)
            now = datetime.now(UTC)
            step = next_step(attempts, error, self._notify)
            status = step.status
            if error is None:
                self._failpoints.hit("notify.after_send")
                conn.execute(
                    "UPDATE notification_outbox SET status = 'sent', attempts = %s, sent_at = %s, "
                    "last_error = NULL WHERE notification_id = %s",
                    (attempts, now, row["notification_id"]),
                )
                if sent is not None:
                    # `pantau telegram` edits it in place as the alarm moves on.
                    conn.execute(
                        "INSERT INTO telegram_messages (chat_id, message_id, alarm_id, "
                        "with_photo) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (sent.chat_id, sent.message_id, alert.alarm_id, sent.with_photo),
                    )
                self.stats.sent += 1
                log.info(
                    "sent %s %s to %s (%s %s)",
                    alert.alarm_type,
                    alert.change,
                    row["recipient"],
                    row["channel"],
                    row["route"],
                )
            elif step.status == "failed":
                conn.execute(
                    "UPDATE notification_outbox SET status = 'failed', attempts = %s, "
                    "last_error = %s WHERE notification_id = %s",
                    (attempts, str(error), row["notification_id"]),
                )
                self.stats.failed += 1
                log.error("gave up on %s after %d attempts: %s", row["recipient"], attempts, error)
            else:
                delay = step.retry_in_s
                conn.execute(
                    "UPDATE notification_outbox SET attempts = %s, last_error = %s, "
                    "next_attempt_at = %s WHERE notification_id = %s",
                    (attempts, str(error), now + timedelta(seconds=delay), row["notification_id"]),
                )
                self.stats.retried += 1
                log.warning(
                    "delivery to %s failed (attempt %d), retrying in %.0f s: %s",
                    row["recipient"],
                    attempts,
                    delay,
                    error,
                )
        self._publish(row, alert, status, attempts, now, error)
        return True

    def _publish(
        self,
        row: dict[str, Any],
        alert: Alert,
        status: str,
        attempts: int,
        now: datetime,
        error: DeliveryError | None,
    ) -> None:
        record = Notification(
            id=stable_id("notification-log", row["notification_id"], attempts),
            ts_capture=alert.ts_capture,
            seq=attempts,
            notification_id=row["notification_id"],
            alarm_id=alert.alarm_id,
            alarm_version=alert.version,
            alarm_type=alert.alarm_type,
            alarm_state=alert.state,
            severity=alert.severity,
            route=row["route"],
            channel=row["channel"],
            recipient=row["recipient"],
            status=status,
            attempts=attempts,
            error=str(error) if error is not None else None,
            ts_ingest=alert.ts_ingest,
            ts_rule=alert.ts_rule,
            sent_at=now if status == "sent" else None,
        )
        kafka.publish(self._producer, self._topics.notifications, record)


def build(settings: Settings) -> Notifier:
    topics = Topics(settings.kafka)
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, topics.specs())
    consumer = open_consumer(
        settings.kafka,
        # librdkafka: joins the group promptly even when the topic was created a moment ago.
        client="confluent",
        group_id=settings.notify.group_id,
        topics=[topics.alerts],
        name=COMPONENT,
    )
    producer = kafka.producer(settings.kafka, COMPONENT)
    return Notifier(
        settings,
        consumer,
        producer,
        dict(settings.postgres.connect_kwargs("writer")),
        Channels(settings.notify),
        failpoints=Failpoints(settings.debug.failpoints),
    )
