"""`pantau telegram`: DLH field staff act on alarms where they already are.

The notifier's Telegram messages carry buttons that fit the alarm's state: Terima (ack),
Berangkat (dispatch to me), Selesai (resolve; the bot then asks for a photo of the cleaned
spot and, if they like, their location) and Alarm keliru (false positive, then the reason).
A press becomes an AlarmAction on alerts.actions.v1, exactly as in the incident console; the
stream processor decides it. The press is answered with the outcome (or the refusal and its
reason), and every message of that alarm is edited in place to show its new state, who did it
and when, for everyone in the chat — whoever acted, here or in the console.

Only Telegram accounts linked to a Pantau user may press (`/start CODE`, with a one-time code
from `pantau users link NAME` or the console); the user's role decides as in the console.
Updates come by long polling (works behind NAT) or a webhook. The next update to ask for is
stored after each update is handled; an update handled again after a crash makes an action
with the same id, which the stream processor applies once.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from kafka import KafkaProducer, TopicPartition
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pantau import kafka, roles
from pantau.codec import DecodeError, decode_as
from pantau.credentials import link_code_digest
from pantau.evidence_store import BadPhoto, FileStore, store_photo
from pantau.ids import SeqCounter, stable_id
from pantau.messages import AlarmAction, Alert, DeadLetter, GeoPoint
from pantau.poison import guard
from pantau.runtime import alive
from pantau.settings import Settings
from pantau.topics import Topics
from streams.buttons import BY_CODE, REASON_BY_CODE, REASONS, STATE_WORDS, keyboard, status_line
from streams.channels import TELEGRAM_CAPTION_LIMIT, TELEGRAM_TEXT_LIMIT, fit_html
from streams.templates import render

log = logging.getLogger(__name__)


class TelegramError(Exception):
    def __init__(self, method: str, description: str, *, retry_after: float | None = None):
        super().__init__(f"Bot API {method}: {description}")
        self.description = description
        self.retry_after = retry_after


class BotApi:
    """The few Bot API calls the bot makes; the token never appears in an error."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s

    def call(self, method: str, timeout_s: float | None = None, **fields: Any) -> Any:
        body = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
        request = urllib.request.Request(  # noqa: S310 - the base URL comes from the settings
            f"{self._base}/bot{self._token}/{method}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self._timeout) as r:  # noqa: S310
                answer = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read())
            except ValueError:
                answer = {"description": f"HTTP {exc.code}"}
        except (OSError, ValueError) as exc:
            text = str(exc).replace(self._token, "***")
            raise TelegramError(method, text) from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            answer = answer if isinstance(answer, dict) else {}
            params = answer.get("parameters") or {}
            raise TelegramError(
                method,
                str(answer.get("description", "not ok")),
                retry_after=params.get("retry_after") if isinstance(params, dict) else None,
            )
        return answer.get("result")

    def download(self, file_path: str, limit: int) -> bytes:
        url = f"{self._base}/file/bot{self._token}/{file_path}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout * 3) as r:  # noqa: S310
                data: bytes = r.read(limit + 1)
        except (OSError, ValueError) as exc:
            raise TelegramError("file", str(exc).replace(self._token, "***")) from None
        if len(data) > limit:
            raise TelegramError("file", f"larger than {limit} bytes")
        return data


@dataclass
class _Waiting:
    done: threading.Event
    outcome: tuple[str, Any] | None = None


class Outcomes:
    """What the stream processor decided about the bot's own actions, as the feed hears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[UUID, _Waiting] = {}

    def expect(self, action_id: UUID) -> None:
        with self._lock:
            self._waiting.setdefault(action_id, _Waiting(threading.Event()))

    def settle(self, action_id: UUID, outcome: tuple[str, Any]) -> None:
        with self._lock:
            waiting = self._waiting.get(action_id)
        if waiting is not None:
            waiting.outcome = outcome
            waiting.done.set()

    def wait(self, action_id: UUID, timeout_s: float) -> tuple[str, Any] | None:
        with self._lock:
            waiting = self._waiting.get(action_id)
        if waiting is None:
            return None
        waiting.done.wait(timeout_s)
        with self._lock:
            self._waiting.pop(action_id, None)
        return waiting.outcome


_ALARM_SQL = """
SELECT a.alarm_id, a.source_kind, a.source_id, a.state, a.alarm_type,
       coalesce(c.kecamatan, s.kecamatan) AS kecamatan, s.type AS sensor_type,
       coalesce(c.name, s.name, a.source_id) AS place_name
FROM alerts a
LEFT JOIN cameras c ON a.source_kind IN ('camera', 'dumping') AND c.camera_id = a.source_id
LEFT JOIN sensors s ON a.source_kind = 'sensor' AND s.sensor_id = a.source_id
WHERE a.alarm_id = %s ORDER BY a.opened_at DESC, a.version DESC LIMIT 1
"""


class FieldBot:
    """Handles one update at a time (button presses, /start, photos, locations)."""

    def __init__(
        self,
        settings: Settings,
        api: BotApi,
        db: psycopg.Connection[dict[str, Any]],
        producer: KafkaProducer,
        outcomes: Outcomes,
    ) -> None:
        self.settings = settings
        self.api = api
        self.db = db
        self.producer = producer
        self.outcomes = outcomes
        self.topic = Topics(settings.kafka).alarm_actions
        self.store = FileStore(settings.dumping.evidence.dir)
        self.telegram = settings.notify.telegram
        self.seq = SeqCounter()

    # ------------------------------------------------------------------ updates

    def handle(self, update: dict[str, Any]) -> None:
        update_id = int(update["update_id"])
        if "callback_query" in update:
            self._press(update_id, update["callback_query"])
        elif "message" in update:
            message = update["message"]
            if "photo" in message:
                self._photo(update_id, message)
            elif "location" in message:
                self._location(message)
            elif str(message.get("text", "")).startswith("/start"):
                self._start(message)

    def _user(self, telegram_user: dict[str, Any]) -> roles.User | None:
        row = self.db.execute(
            "SELECT u.username, u.display_name, u.role, u.kecamatan FROM telegram_links l "
            "JOIN console_users u USING (username) WHERE l.telegram_user_id = %s "
            "AND NOT u.disabled",
            [int(telegram_user["id"])],
        ).fetchone()
        if row is None:
            return None
        return roles.User(
            row["username"], row["role"], row["display_name"] or "", tuple(row["kecamatan"] or ())
        )

    def _answer(self, query: dict[str, Any], text: str, *, alert: bool = False) -> None:
        try:
            self.api.call(
                "answerCallbackQuery",
                callback_query_id=query["id"],
                text=text[:200],
                show_alert=alert or None,
            )
        except TelegramError as exc:
            log.warning("could not answer a button press: %s", exc)

    def _press(self, update_id: int, query: dict[str, Any]) -> None:
        data = str(query.get("data") or "")
        code, _, rest = data.partition(":")
        who = query.get("from") or {}
        user = self._user(who)
        if user is None:
            log.warning(
                "button press from Telegram user %s, who is linked to no Pantau user: refused",
                who.get("id"),
            )
            self._audit(None, "telegram:refused", None, telegram_user=who.get("id"), data=data)
            self._answer(
                query,
                "Akun Telegram Anda belum terhubung ke Pantau. Minta kode ke admin, lalu kirim "
                "/start KODE ke bot ini.",
                alert=True,
            )
            return
        reason: str | None = None
        if code == "fr":
            reason_code, _, rest = rest.partition(":")
            reason = REASON_BY_CODE.get(reason_code)
            action = "false_positive"
        elif code == "rn":
            action = "resolve"
        else:
            action = BY_CODE.get(code, "")
        try:
            alarm_id = UUID(rest)
        except ValueError:
            self._answer(query, "Tombol ini tidak dikenal.")
            return
        alarm = self.db.execute(_ALARM_SQL, [alarm_id]).fetchone()
        scope = (
            roles.AlarmScope(alarm["source_kind"], alarm["sensor_type"], alarm["kecamatan"])
            if alarm
            else None
        )
        if not action or alarm is None or scope is None or not roles.can_act(user, scope):
            self._audit(user.username, "telegram:refused", str(alarm_id), data=data)
            self._answer(query, "Anda tidak berhak atas alarm ini.", alert=True)
            return
        chat_id = (query.get("message") or {}).get("chat", {}).get("id")
        if code == "f":
            # The reason first: a second set of buttons, for the one who pressed.
            self._answer(query, "Pilih alasannya.")
            self._ask(
                chat_id,
                f"Alarm keliru di {alarm['place_name']}? Pilih alasannya ({user.name}):",
                [
                    [{"text": label, "callback_data": f"fr:{c}:{alarm_id}"}]
                    for _, c, label in REASONS
                ],
            )
            return
        if code == "r":
            # Selesai: the photo of the cleaned spot, and the place, before the action.
            self.db.execute(
                "INSERT INTO telegram_pending (telegram_user_id, chat_id, alarm_id, action) "
                "VALUES (%s, %s, %s, 'resolve') ON CONFLICT (telegram_user_id) DO UPDATE SET "
                "chat_id = EXCLUDED.chat_id, alarm_id = EXCLUDED.alarm_id, lat = NULL, "
                "lon = NULL, asked_at = now()",
                [int(who["id"]), chat_id, alarm_id],
            )
            self._answer(query, "Kirim foto lokasi yang sudah bersih.")
            self._ask(
                chat_id,
                f"{user.name}: kirim foto lokasi yang sudah bersih di {alarm['place_name']} "
                "(dan bagikan lokasi Anda bila bisa).",
                [[{"text": "Selesai tanpa foto", "callback_data": f"rn:{alarm_id}"}]],
            )
            return
        if code == "rn":
            self._clear_pending(int(who["id"]))
        self._answer(query, self._act(update_id, user, alarm, action, reason=reason))

    def _act(
        self,
        update_id: int,
        user: roles.User,
        alarm: dict[str, Any],
        action: str,
        *,
        reason: str | None = None,
        photo: Any = None,
        location: GeoPoint | None = None,
    ) -> str:
        """Publish the action and wait a little for the decision; the answer for the button."""
        # The update's id makes the action's: handled again after a crash, it is the same
        # action, which the stream processor applies once.
        action_id = stable_id("telegram", update_id, self.telegram.base_url)
        message = AlarmAction(
            id=action_id,
            ts_capture=datetime.now(UTC),
            seq=next(self.seq),
            action=action,
            source_kind=alarm["source_kind"],
            source_id=alarm["source_id"],
            alarm_id=alarm["alarm_id"],
            by=user.username,
            device="telegram",
            to=user.name if action == "dispatch" else None,
            reason=reason,
            photo=photo,
            location=location,
        )
        self.outcomes.expect(action_id)
        kafka.publish(self.producer, self.topic, message).get(timeout=10)
        self._audit(user.username, f"action:{action}", str(alarm["alarm_id"]), device="telegram")
        outcome = self.outcomes.wait(action_id, self.telegram.action_wait_s)
        if outcome is None:
            return "Terkirim; menunggu keputusan."
        kind, detail = outcome
        if kind == "refused":
            return f"Ditolak: {detail}"
        return f"Tercatat: {STATE_WORDS.get(detail, detail)}."

    def _ask(self, chat_id: Any, text: str, buttons: list[list[dict[str, str]]]) -> None:
        try:
            self.api.call(
                "sendMessage",
                chat_id=chat_id,
                text=text,
                reply_markup={"inline_keyboard": buttons},
            )
        except TelegramError as exc:
            log.warning("could not ask chat %s: %s", chat_id, exc)

    def _pending(self, telegram_user_id: int) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM telegram_pending WHERE telegram_user_id = %s AND asked_at > %s",
            [telegram_user_id, datetime.now(UTC) - timedelta(seconds=self.telegram.photo_wait_s)],
        ).fetchone()
        return row

    def _clear_pending(self, telegram_user_id: int) -> None:
        self.db.execute(
            "DELETE FROM telegram_pending WHERE telegram_user_id = %s", [telegram_user_id]
        )

    def _location(self, message: dict[str, Any]) -> None:
        who = message.get("from") or {}
        pending = self._pending(int(who.get("id", 0)))
        if pending is None:
            return
        where = message["location"]
        self.db.execute(
            "UPDATE telegram_pending SET lat = %s, lon = %s WHERE telegram_user_id = %s",
            [float(where["latitude"]), float(where["longitude"]), int(who["id"])],
        )
        self._reply(message, "Lokasi diterima. Sekarang kirim fotonya.")

    def _photo(self, update_id: int, message: dict[str, Any]) -> None:
        who = message.get("from") or {}
        user = self._user(who)
        pending = self._pending(int(who.get("id", 0)))
        if user is None or pending is None:
            return
        alarm = self.db.execute(_ALARM_SQL, [pending["alarm_id"]]).fetchone()
        if alarm is None:
            return
        # The largest size Telegram keeps of the photo.
        sizes = sorted(message["photo"], key=lambda p: int(p.get("file_size") or 0))
        action_id = stable_id("telegram", update_id, self.telegram.base_url)
        try:
            info = self.api.call("getFile", file_id=sizes[-1]["file_id"])
            data = self.api.download(str(info["file_path"]), self.settings.console.max_upload_bytes)
            ref = store_photo(self.store, alarm["alarm_id"], action_id, data)
        except (TelegramError, BadPhoto, OSError, KeyError) as exc:
            log.warning("photo for alarm %s not stored: %s", alarm["alarm_id"], exc)
            self._reply(message, "Foto tidak bisa disimpan; coba kirim lagi.")
            return
        location = (
            GeoPoint(lat=pending["lat"], lon=pending["lon"])
            if pending["lat"] is not None and pending["lon"] is not None
            else None
        )
        answer = self._act(update_id, user, alarm, "resolve", photo=ref, location=location)
        self._clear_pending(int(who["id"]))
        self._reply(message, answer)

    def _reply(self, message: dict[str, Any], text: str) -> None:
        try:
            self.api.call(
                "sendMessage",
                chat_id=message["chat"]["id"],
                text=text,
                reply_to_message_id=message.get("message_id"),
            )
        except TelegramError as exc:
            log.warning("could not reply: %s", exc)

    def _start(self, message: dict[str, Any]) -> None:
        code = str(message.get("text", "")).partition(" ")[2].strip()
        who = message.get("from") or {}
        if not code:
            self._reply(message, "Kirim /start KODE dengan kode dari admin Pantau.")
            return
        row = self.db.execute(
            "UPDATE telegram_link_codes SET used_at = now() WHERE code_hash = %s "
            "AND used_at IS NULL AND expires_at > now() RETURNING username",
            [link_code_digest(code)],
        ).fetchone()
        if row is None:
            self._audit(None, "telegram:link-refused", None, telegram_user=who.get("id"))
            self._reply(message, "Kode tidak dikenal atau sudah kedaluwarsa.")
            return
        name = " ".join(str(who.get(k, "")) for k in ("first_name", "last_name")).strip()
        self.db.execute(
            "INSERT INTO telegram_links (telegram_user_id, username, telegram_name) "
            "VALUES (%s, %s, %s) ON CONFLICT (telegram_user_id) DO UPDATE SET "
            "username = EXCLUDED.username, telegram_name = EXCLUDED.telegram_name, "
            "linked_at = now()",
            [int(who["id"]), row["username"], name[:200]],
        )
        self._audit(row["username"], "telegram:linked", None, telegram_user=who.get("id"))
        self._reply(message, f"Terhubung sebagai {row['username']}.")

    def _audit(self, username: str | None, event: str, target: str | None, **detail: Any) -> None:
        self.db.execute(
            "INSERT INTO console_audit (username, event, target, address, detail) "
            "VALUES (%s, %s, %s, 'telegram', %s)",
            [username, event, target, Jsonb(detail)],
        )


class Editor:
    """The feed: every alarm version and refused action from Kafka. Settles the bot's own
    actions, and edits the messages of an alarm to show its new state."""

    def __init__(
        self, settings: Settings, api: BotApi, outcomes: Outcomes, stop: threading.Event
    ) -> None:
        self.settings = settings
        self.api = api
        self.outcomes = outcomes
        self.stop = stop
        topics = Topics(settings.kafka)
        self.alerts = topics.alerts
        self.refusals = topics.dead_letters(topics.alarm_actions)
        self.tz = ZoneInfo(settings.timezone)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="telegram-editor", daemon=True)

    def _run(self) -> None:
        try:
            consumer = kafka.consumer(
                self.settings.kafka, None, [], "telegram-editor", auto_offset_reset="latest",
                fetch_max_wait_ms=100,
            )  # fmt: skip
            parts = [
                TopicPartition(t, p)
                for t in (self.alerts, self.refusals)
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(parts)
            consumer.seek_to_end(*parts)
            for tp in parts:
                consumer.position(tp)
            db = psycopg.connect(
                **self.settings.postgres.connect_kwargs("console"),  # type: ignore[arg-type]
                autocommit=True,
                row_factory=dict_row,
            )
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise
        self.ready.set()
        try:
            while not self.stop.is_set():
                for tp, records in consumer.poll(timeout_ms=200, max_records=200).items():
                    for record in records:
                        self._guarded(db, tp.topic, record.value or b"")
        finally:
            consumer.close()
            db.close()

    def _guarded(self, db: psycopg.Connection[dict[str, Any]], topic: str, value: bytes) -> None:
        # A record the editor cannot handle (or a message Telegram refuses) is skipped, never
        # the end of the editor: the alarm itself is in the database either way.
        guard(
            lambda: self._record(db, topic, value),
            lambda reason: log.warning("telegram editor: %s", reason),
            where=topic,
        )

    def _record(self, db: psycopg.Connection[dict[str, Any]], topic: str, value: bytes) -> None:
        try:
            if topic == self.alerts:
                alert = decode_as(value, Alert)
            else:
                letter = decode_as(value, DeadLetter)
                if letter.stage != "streams":
                    return
                action = decode_as(letter.original, AlarmAction)
                self.outcomes.settle(action.id, ("refused", letter.error))
                return
        except DecodeError:
            return
        if alert.action_id is not None:
            self.outcomes.settle(alert.action_id, ("applied", alert.state))
        if alert.change not in _EDITABLE:
            return
        self.edit(db, alert)

    def edit(self, db: psycopg.Connection[dict[str, Any]], alert: Alert) -> int:
        """Edit every message of the alarm to its new state; how many were edited."""
        messages = db.execute(
            "SELECT chat_id, message_id, with_photo FROM telegram_messages WHERE alarm_id = %s",
            [alert.alarm_id],
        ).fetchall()
        if not messages:
            return 0
        notify = self.settings.notify
        rendered = render(
            alert, language=notify.language, tz=self.tz, incident_url=notify.incident_url
        )
        edited = 0
        for m in messages:
            limit = TELEGRAM_CAPTION_LIMIT if m["with_photo"] else TELEGRAM_TEXT_LIMIT
            footer = "\n\n" + status_line(alert, self.tz)
            text = fit_html(rendered.html, limit - len(footer)) + footer
            markup = keyboard(alert) or {"inline_keyboard": []}
            try:
                if m["with_photo"]:
                    self.api.call(
                        "editMessageCaption",
                        chat_id=m["chat_id"],
                        message_id=m["message_id"],
                        caption=text,
                        parse_mode="HTML",
                        reply_markup=markup,
                    )
                else:
                    self.api.call(
                        "editMessageText",
                        chat_id=m["chat_id"],
                        message_id=m["message_id"],
                        text=text,
                        parse_mode="HTML",
                        reply_markup=markup,
                        disable_web_page_preview=True,
                    )
                edited += 1
            except TelegramError as exc:
                if "not modified" not in exc.description:
                    log.warning("could not edit message %s: %s", m["message_id"], exc)
        return edited


# The changes the templates word (and people want to see in the message).
_EDITABLE = frozenset(
    {"opened", "escalated", "reopened", "cleared", "acknowledged", "dispatched", "resolved",
     "false_positive", "unacknowledged", "confirmed"}
)  # fmt: skip


def run(settings: Settings, stop: threading.Event) -> int:
    token = settings.notify.telegram.token
    if token is None or not token.get_secret_value().strip():
        print("pantau telegram: no bot token (notify.telegram.token)", flush=True)
        return 2
    api = BotApi(settings.notify.telegram.base_url, token.get_secret_value().strip())
    kafka.wait_until_ready(settings.kafka)
    kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
    outcomes = Outcomes()
    editor = Editor(settings, api, outcomes, stop)
    editor.thread.start()
    editor.ready.wait(60)
    if editor.error is not None:
        raise RuntimeError(f"telegram editor: {editor.error}") from editor.error
    producer = kafka.producer(settings.kafka, "telegram")
    db = psycopg.connect(
        **settings.postgres.connect_kwargs("console"),  # type: ignore[arg-type]
        autocommit=True,
        row_factory=dict_row,
    )
    bot = FieldBot(settings, api, db, producer, outcomes)
    handled = 0

    def one(update: dict[str, Any]) -> None:
        nonlocal handled
        guard(
            lambda: bot.handle(update),
            lambda reason: log.warning(
                "update %s not handled: %s", update.get("update_id"), reason
            ),
            where="telegram",
        )
        handled += 1

    try:
        if settings.notify.telegram.updates == "webhook":
            _serve_webhook(settings, db, one, stop)
        else:
            _poll(settings, api, db, one, stop)
    finally:
        producer.close(timeout=10)
        db.close()
        editor.thread.join(timeout=10)
    print(f"telegram: {handled} updates handled", flush=True)
    return 0


def _offset(db: psycopg.Connection[dict[str, Any]]) -> int:
    row = db.execute("SELECT value FROM telegram_state WHERE name = 'offset'").fetchone()
    return int(row["value"]) if row else 0


def _store_offset(db: psycopg.Connection[dict[str, Any]], value: int) -> None:
    db.execute(
        "INSERT INTO telegram_state (name, value) VALUES ('offset', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        [value],
    )


def _poll(
    settings: Settings,
    api: BotApi,
    db: psycopg.Connection[dict[str, Any]],
    one: Callable[[dict[str, Any]], None],
    stop: threading.Event,
) -> None:
    wait = settings.notify.telegram.poll_timeout_s
    offset = _offset(db)
    log.info("telegram: long polling from update %d", offset)
    while not stop.is_set():
        alive()
        try:
            updates = api.call(
                "getUpdates",
                timeout_s=wait + 10,
                offset=offset or None,
                timeout=wait,
                allowed_updates=["message", "callback_query"],
            )
        except TelegramError as exc:
            log.warning("getUpdates: %s", exc)
            stop.wait(min(30.0, exc.retry_after or 3.0))
            continue
        for update in updates or ():
            one(update)
            # Stored after each update: a restart goes on from the next one.
            offset = int(update["update_id"]) + 1
            _store_offset(db, offset)
            alive()


def _serve_webhook(
    settings: Settings,
    db: psycopg.Connection[dict[str, Any]],
    one: Callable[[dict[str, Any]], None],
    stop: threading.Event,
) -> None:
    telegram = settings.notify.telegram
    assert telegram.webhook_secret is not None
    secret = telegram.webhook_secret.get_secret_value()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            given = self.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if not secrets.compare_digest(given.encode(), secret.encode()):
                self.send_response(401)
                self.end_headers()
                return
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            try:
                update = json.loads(self.rfile.read(length))
                update_id = int(update["update_id"])
            except (ValueError, KeyError, TypeError):
                self.send_response(400)
                self.end_headers()
                return
            with lock:
                # Telegram sends an update again until it is answered 200: once is enough.
                if update_id >= _offset(db):
                    one(update)
                    _store_offset(db, update_id + 1)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer((telegram.webhook_host, telegram.webhook_port), Handler)
    threading.Thread(target=server.serve_forever, name="telegram-webhook", daemon=True).start()
    log.info("telegram: webhook on %s:%d", telegram.webhook_host, telegram.webhook_port)
    try:
        while not stop.wait(1.0):
            alive()
    finally:
        server.shutdown()
