"""The notifier's channels against real local servers: an HTTP server that plays a webhook
receiver and the Telegram Bot API, and an SMTP server (aiosmtpd). Needs no other service."""

from __future__ import annotations

import base64
import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from pantau.messages import Alert
from pantau.settings import NotifySettings
from streams.channels import Channels, DeliveryError
from streams.routing import Delivery
from streams.templates import Rendered, render
from tests.factories import ALARM_ID, SAMPLES

TOKEN = "987654:AAHsecret-bot-token"
NOTIFICATION_ID = UUID("01937a4e-8c2b-7d10-9a4f-0000000b0001")
WIB = ZoneInfo("Asia/Jakarta")
INCIDENT_URL = "http://wall.local/d/pantau-wall/wall?var-alarm={alarm_id}"


# --------------------------------------------------------------------------- HTTP server


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, EmailMessage]:
        # Text fields carry no charset of their own; read them with part_text().
        """multipart/form-data parts by field name, parsed by the standard e-mail parser."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.message_from_bytes(head + self.body, policy=policy.default)
        assert isinstance(message, EmailMessage) and message.is_multipart()
        parts: dict[str, EmailMessage] = {}
        for part in message.iter_parts():
            assert isinstance(part, EmailMessage)
            name = part.get_param("name", header="content-disposition")
            assert isinstance(name, str)
            parts[name] = part
        return parts


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Receiver(ThreadingHTTPServer):
    """Records every request; answers from a per-path queue of replies, else 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Request] = []
        self.replies: dict[str, list[Reply]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, path: str, *replies: Reply) -> None:
        with self.lock:
            self.replies.setdefault(path, []).extend(replies)

    def take_reply(self, path: str) -> Reply:
        with self.lock:
            queue = self.replies.get(path)
            if queue:
                return queue.pop(0)
        if "/sendMessage" in path or "/sendPhoto" in path:
            return Reply(body=b'{"ok": true, "result": {"message_id": 1}}')
        return Reply()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version: ClassVar[str] = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        path = self.path
        with self.server.lock:
            self.server.requests.append(
                Request("POST", path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        reply = self.server.take_reply(urlsplit(path).path)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        self.send_response(reply.status)
        for name, value in {"Content-Type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# --------------------------------------------------------------------------- SMTP server


class Inbox:
    """aiosmtpd handler: keeps every message; refuses recipients when told to."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse_with: str | None = None
        self.logins: list[tuple[str, str]] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_with is not None:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers a refusal itself (535).
        return AuthResult(success=password == "rahasia", handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield inbox, port
    controller.stop()


# --------------------------------------------------------------------------- helpers


def settings(**notify: Any) -> NotifySettings:
    return NotifySettings.model_validate({"incident_url": INCIDENT_URL, "timeout_s": 2.0, **notify})


def alert(**changes: Any) -> Alert:
    data = SAMPLES["alert"].model_dump()
    data.update(changes)
    return Alert.model_validate(data)


def rendered(a: Alert) -> Rendered:
    return render(a, language="id", tz=WIB, incident_url=INCIDENT_URL)


def send(channels: Channels, delivery: Delivery, a: Alert | None = None) -> None:
    a = a or alert()
    channels.send(delivery, a, rendered(a), notification_id=NOTIFICATION_ID)


def telegram(receiver: Receiver, **notify: Any) -> Channels:
    return Channels(settings(telegram={"base_url": receiver.url, "token": TOKEN}, **notify))


def jpeg(tmp_path: Path) -> Path:
    ok, encoded = cv2.imencode(".jpg", np.full((48, 64, 3), (30, 120, 200), np.uint8))
    assert ok
    path = tmp_path / "bukti sampah.jpg"
    path.write_bytes(encoded.tobytes())
    return path


def evidence(kind: str, uri: str) -> list[dict[str, str]]:
    return [{"kind": kind, "uri": uri, "sha256": "ab" * 32}]


def part_text(part: EmailMessage) -> str:
    """A form field's text: UTF-8, as the Bot API reads it."""
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


def error_texts(exc: BaseException) -> str:
    """Everything a log line with the traceback could show of the error and its causes."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), repr(getattr(current, "args", ""))]
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "\n".join(texts)


# --------------------------------------------------------------------------- webhook


def test_webhook_receives_the_alarm_as_json_with_an_idempotency_key(
    receiver: Receiver,
) -> None:
    a = alert()
    url = f"{receiver.url}/hooks/pantau?source=pantau"
    Channels(settings()).send(
        Delivery("command-center", "webhook", url), a, rendered(a), notification_id=NOTIFICATION_ID
    )
    [request] = receiver.requests
    assert request.path == "/hooks/pantau?source=pantau"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == str(NOTIFICATION_ID)
    body = request.json()
    assert body == {
        "notification_id": str(NOTIFICATION_ID),
        "alarm": a.model_dump(mode="json"),
        "subject": rendered(a).subject,
        "text": rendered(a).text,
        "link": f"http://wall.local/d/pantau-wall/wall?var-alarm={ALARM_ID}",
    }
    assert "Tinggi muka air" in body["text"]


def test_webhook_credentials_in_the_url_become_basic_auth(receiver: Receiver) -> None:
    host = receiver.url.removeprefix("http://")
    send(Channels(settings()), Delivery("r", "webhook", f"http://pantau:p%40ss@{host}/in"))
    [request] = receiver.requests
    assert request.path == "/in"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"pantau:p@ss").decode()


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after_s", "says"),
    [
        (Reply(500, b"boom"), True, None, "HTTP 500 Internal Server Error: boom"),
        (Reply(502, b"<html>bad gateway</html>"), True, None, "HTTP 502 Bad Gateway"),
        (Reply(503, b"", {"Retry-After": "30"}), True, 30.0, "HTTP 503"),
        (Reply(429, b"slow down", {"Retry-After": "5"}), True, 5.0, "HTTP 429"),
        (Reply(400, b'{"error": "unknown alarm type"}'), False, None, "unknown alarm type"),
        (Reply(401, b"no"), False, None, "HTTP 401 Unauthorized"),
        (Reply(404, b""), False, None, "HTTP 404 Not Found"),
        # A redirect is not followed: it would re-send the alert elsewhere as a GET.
        (Reply(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"}), False, None, "HTTP 302"),
    ],
)
def test_webhook_failures_say_whether_a_retry_can_help(
    receiver: Receiver, reply: Reply, retryable: bool, retry_after_s: float | None, says: str
) -> None:
    receiver.reply("/hook", reply)
    host = receiver.url.removeprefix("http://")
    delivery = Delivery("dlh", "webhook", f"http://user:hunter2@{host}/hook?key=s3cret")
    with pytest.raises(DeliveryError) as caught:
        send(Channels(settings()), delivery)
    error = caught.value
    assert error.retryable is retryable
    assert error.status == reply.status
    assert error.retry_after_s == retry_after_s
    assert says in str(error)
    assert f"webhook to http://{host}/hook (route dlh)" in str(error)
    assert "hunter2" not in str(error) and "s3cret" not in str(error)
    assert len(receiver.requests) == 1


def test_a_malformed_webhook_url_is_not_retried_and_its_query_never_shows() -> None:
    delivery = Delivery("r", "webhook", "http://127.0.0.1:9/hook?key=s3cret and more")
    with pytest.raises(DeliveryError, match="malformed URL") as caught:
        send(Channels(settings()), delivery)
    assert not caught.value.retryable
    assert "s3cret" not in error_texts(caught.value)


def test_webhook_that_is_unreachable_or_too_slow_is_retryable(receiver: Receiver) -> None:
    channels = Channels(settings(timeout_s=0.5))
    with pytest.raises(DeliveryError) as refused:
        send(channels, Delivery("r", "webhook", f"http://127.0.0.1:{free_port()}/hook"))
    assert refused.value.retryable

    receiver.reply("/slow", Reply(delay_s=2.0))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as slow:
        send(channels, Delivery("r", "webhook", f"{receiver.url}/slow"))
    assert slow.value.retryable
    assert "timed out" in str(slow.value)
    assert time.monotonic() - started < 1.5


# --------------------------------------------------------------------------- telegram


def test_telegram_message_goes_to_the_bots_send_message(receiver: Receiver) -> None:
    a = alert()
    send(telegram(receiver), Delivery("command-center", "telegram", "-1001234"), a)
    [request] = receiver.requests
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "chat_id": "-1001234",
        "text": rendered(a).html,
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
        # The buttons `pantau telegram` answers, fitting the open alarm.
        "reply_markup": {
            "inline_keyboard": [
                [
                    {"text": "✅ Terima", "callback_data": f"a:{a.alarm_id}"},
                    {"text": "🚚 Berangkat", "callback_data": f"d:{a.alarm_id}"},
                ],
                [
                    {"text": "🧹 Selesai", "callback_data": f"r:{a.alarm_id}"},
                    {"text": "❎ Alarm keliru", "callback_data": f"f:{a.alarm_id}"},
                ],
            ]
        },
    }


def test_telegram_sends_the_evidence_photo_with_the_alert_as_caption(
    receiver: Receiver, tmp_path: Path
) -> None:
    photo = jpeg(tmp_path)
    a = alert(
        alarm_type="dumping",
        source_kind="dumping",
        change="opened",
        evidence=evidence("before", (tmp_path / "missing.jpg").as_uri())
        + evidence("alert", photo.as_uri()),
    )
    send(telegram(receiver), Delivery("r", "telegram", "-1001234"), a)
    [request] = receiver.requests
    assert request.path == f"/bot{TOKEN}/sendPhoto"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    form = request.form()
    assert part_text(form["chat_id"]) == "-1001234"
    assert part_text(form["parse_mode"]) == "HTML"
    assert part_text(form["caption"]) == rendered(a).html
    assert part_text(form["caption"]).startswith("<b>⚠️ Sampah liar terdeteksi</b>")
    assert form["photo"].get_content_type() == "image/jpeg"
    assert form["photo"].get_filename() == "bukti sampah.jpg"
    assert form["photo"].get_content() == photo.read_bytes()
    assert json.loads(part_text(form["reply_markup"]))["inline_keyboard"][0][0] == {
        "text": "✅ Terima",
        "callback_data": f"a:{a.alarm_id}",
    }


def test_a_long_caption_is_shortened_keeping_headline_and_link(
    receiver: Receiver, tmp_path: Path
) -> None:
    photo = jpeg(tmp_path)
    a = alert(message="Air meluap " * 150, evidence=evidence("still", photo.as_uri()))
    full = rendered(a).html
    assert len(full) > 1024
    send(telegram(receiver), Delivery("r", "telegram", "-1001234"), a)
    caption = part_text(receiver.requests[0].form()["caption"])
    assert len(caption.encode("utf-16-le")) // 2 <= 1024
    assert caption.splitlines()[0] == full.splitlines()[0]
    assert caption.splitlines()[-1] == full.splitlines()[-1]
    assert "…" in caption.splitlines()
    # The message text has room for all of it.
    send(telegram(receiver), Delivery("r", "telegram", "-1001234"), alert(message=a.message))
    assert receiver.requests[1].json()["text"] == rendered(alert(message=a.message)).html


@pytest.mark.parametrize(
    "ref",
    [
        evidence("alert", "file:///nonexistent/pantau/evidence/a.jpg"),
        evidence("clip", "PHOTO"),
        evidence("alert", "s3://evidence/a.jpg"),
        evidence("alert", "TEXT_FILE"),
    ],
)
def test_without_a_local_image_the_alert_goes_as_text(
    receiver: Receiver, tmp_path: Path, ref: list[dict[str, str]]
) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    uri = ref[0]["uri"].replace("PHOTO", jpeg(tmp_path).as_uri())
    ref = [{**ref[0], "uri": uri.replace("TEXT_FILE", text_file.as_uri())}]
    send(telegram(receiver), Delivery("r", "telegram", "-1001234"), alert(evidence=ref))
    assert [r.path for r in receiver.requests] == [f"/bot{TOKEN}/sendMessage"]


def test_a_photo_telegram_refuses_falls_back_to_text(receiver: Receiver, tmp_path: Path) -> None:
    receiver.reply(
        f"/bot{TOKEN}/sendPhoto",
        Reply(
            400,
            b'{"ok": false, "error_code": 400, "description": "Bad Request: IMAGE_PROCESS_FAILED"}',
        ),
    )
    a = alert(evidence=evidence("alert", jpeg(tmp_path).as_uri()))
    send(telegram(receiver), Delivery("r", "telegram", "-1001234"), a)
    assert [r.path for r in receiver.requests] == [
        f"/bot{TOKEN}/sendPhoto",
        f"/bot{TOKEN}/sendMessage",
    ]


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after_s", "says"),
    [
        (
            Reply(
                429,
                b'{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}}',
            ),
            True,
            7.0,
            "HTTP 429 Too Many Requests: retry after 7",
        ),
        (
            Reply(500, b'{"ok": false, "error_code": 500, "description": "Internal Server Error"}'),
            True,
            None,
            "HTTP 500 Internal Server Error",
        ),
        (Reply(502, b"<html>nginx</html>"), True, None, "HTTP 502 Bad Gateway"),
        (
            Reply(
                400,
                b'{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}',
            ),
            False,
            None,
            "HTTP 400 Bad Request: chat not found",
        ),
        (
            Reply(
                403,
                b'{"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}',
            ),
            False,
            None,
            "bot was blocked by the user",
        ),
        (
            Reply(401, b'{"ok": false, "error_code": 401, "description": "Unauthorized"}'),
            False,
            None,
            "HTTP 401 Unauthorized",
        ),
        (Reply(200, b'{"ok": false, "description": "odd"}'), False, None, "without ok: odd"),
    ],
)
def test_telegram_failures_say_whether_a_retry_can_help_and_never_show_the_token(
    receiver: Receiver, reply: Reply, retryable: bool, retry_after_s: float | None, says: str
) -> None:
    receiver.reply(f"/bot{TOKEN}/sendMessage", reply)
    with pytest.raises(DeliveryError) as caught:
        send(telegram(receiver), Delivery("command-center", "telegram", "-1001234"))
    error = caught.value
    assert error.retryable is retryable
    assert error.retry_after_s == retry_after_s
    assert says in str(error)
    assert str(error).startswith("telegram to -1001234 (route command-center): ")
    assert TOKEN not in error_texts(error)


def test_telegram_unreachable_is_retryable_and_never_shows_the_token() -> None:
    port = free_port()
    channels = Channels(settings(telegram={"base_url": f"http://127.0.0.1:{port}", "token": TOKEN}))
    with pytest.raises(DeliveryError) as caught:
        send(channels, Delivery("r", "telegram", "-1001234"))
    assert caught.value.retryable
    assert TOKEN not in error_texts(caught.value)


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("api.telegram.org", "not an http(s) URL"),
        ("htps://api.telegram.org", "not an http(s) URL"),
        ("http://api.telegram.org:port", "malformed URL"),
        ("http://api.telegram.org/a b\r\nX-Injected: 1", "malformed URL"),
    ],
)
def test_a_malformed_bot_api_url_is_not_retried_and_never_shows_the_token(
    base_url: str, says: str
) -> None:
    channels = Channels(settings(telegram={"base_url": base_url, "token": TOKEN}))
    with pytest.raises(DeliveryError) as caught:
        send(channels, Delivery("r", "telegram", "-1001234"))
    assert not caught.value.retryable
    assert says in str(caught.value)
    assert TOKEN not in error_texts(caught.value)


def test_telegram_without_a_token_is_not_retried() -> None:
    with pytest.raises(DeliveryError, match="no Telegram bot token") as caught:
        send(Channels(settings()), Delivery("r", "telegram", "-1001234"))
    assert not caught.value.retryable


# --------------------------------------------------------------------------- e-mail


def received(inbox: Inbox) -> EmailMessage:
    [(_, _, content)] = inbox.messages
    message = email.message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_email_arrives_with_subject_message_id_and_both_parts(
    smtp_server: tuple[Inbox, int],
) -> None:
    inbox, port = smtp_server
    channels = Channels(
        settings(email={"host": "127.0.0.1", "port": port, "sender": "pantau@mojokertokab.go.id"})
    )
    a = alert(place={"name": "Dam <Lengkong> & Co", "desa": "Lengkong"})
    send(channels, Delivery("dlh", "email", "dlh-sooko@localhost"), a)
    [(mail_from, rcpt_tos, _)] = inbox.messages
    assert mail_from == "pantau@mojokertokab.go.id"
    assert rcpt_tos == ["dlh-sooko@localhost"]
    message = received(inbox)
    assert message["Subject"] == rendered(a).subject
    assert message["Subject"].startswith("[KRITIS] Tinggi muka air melewati batas")
    assert message["Message-ID"] == f"<{NOTIFICATION_ID}@pantau>"
    assert message["From"] == "pantau@mojokertokab.go.id"
    assert message["To"] == "dlh-sooko@localhost"
    assert message["Date"].datetime.tzinfo is not None
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == rendered(a).text
    html_text = html.get_content()
    assert "Dam &lt;Lengkong&gt; &amp; Co" in html_text
    assert "<br>" in html_text
    assert f"var-alarm={ALARM_ID}" in html_text


def test_email_logs_in_when_a_username_is_set(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    send(
        Channels(
            settings(
                email={
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "pantau",
                    "password": "rahasia",
                }
            )
        ),
        Delivery("r", "email", "cc@localhost"),
    )
    assert inbox.logins == [("pantau", "rahasia")]
    assert len(inbox.messages) == 1

    bad = Channels(
        settings(
            email={"host": "127.0.0.1", "port": port, "username": "pantau", "password": "salah"}
        )
    )
    with pytest.raises(DeliveryError, match="SMTP 535") as caught:
        send(bad, Delivery("r", "email", "cc@localhost"))
    assert not caught.value.retryable
    assert "salah" not in error_texts(caught.value)


@pytest.mark.parametrize(
    ("refusal", "retryable"),
    [("550 5.1.1 No such user here", False), ("451 4.3.0 Mailbox busy, try later", True)],
)
def test_a_refused_recipient_says_whether_a_retry_can_help(
    smtp_server: tuple[Inbox, int], refusal: str, retryable: bool
) -> None:
    inbox, port = smtp_server
    inbox.refuse_with = refusal
    channels = Channels(settings(email={"host": "127.0.0.1", "port": port}))
    with pytest.raises(DeliveryError) as caught:
        send(channels, Delivery("dlh", "email", "nobody@localhost"))
    assert caught.value.retryable is retryable
    assert caught.value.status == int(refusal[:3])
    assert str(caught.value).startswith("email to nobody@localhost (route dlh) via SMTP 127.0.0.1:")
    assert refusal[4:] in str(caught.value)
    assert inbox.messages == []


def test_an_unreachable_mail_server_is_retryable() -> None:
    channels = Channels(settings(email={"host": "127.0.0.1", "port": free_port()}))
    with pytest.raises(DeliveryError) as caught:
        send(channels, Delivery("r", "email", "cc@localhost"))
    assert caught.value.retryable
