"""A local server that answers like the Telegram Bot API, for the notifier and the bot:
sendMessage, sendPhoto, editMessageText, editMessageCaption, answerCallbackQuery,
getUpdates (long polling over a queue the test fills), getFile and file downloads."""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "123456:fake-bot-token-for-tests"


@dataclass
class Sent:
    chat_id: int
    message_id: int
    text: str
    markup: dict[str, Any] | None
    photo: bool
    edits: int = 0

    def buttons(self) -> list[str]:
        rows = (self.markup or {}).get("inline_keyboard") or []
        return [b["callback_data"] for row in rows for b in row]


@dataclass
class FakeTelegram:
    url: str = ""
    messages: dict[tuple[int, int], Sent] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    _update_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Condition = field(default_factory=threading.Condition)

    # ------------------------------------------------------------------ the test's side

    def chat_messages(self, chat_id: int) -> list[Sent]:
        with self._lock:
            return [m for (c, _), m in sorted(self.messages.items()) if c == chat_id]

    def press(self, user_id: int, message: Sent, data: str) -> str:
        """A button press; the callback query's id (to find its answer)."""
        query_id = f"q{next(self._ids)}"
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
                    "message": {"message_id": message.message_id, "chat": {"id": message.chat_id}},
                    "data": data,
                }
            }
        )
        return query_id

    def send_text(self, user_id: int, chat_id: int, text: str) -> None:
        self._push({"message": self._message(user_id, chat_id, text=text)})

    def send_location(self, user_id: int, chat_id: int, lat: float, lon: float) -> None:
        self._push(
            {
                "message": self._message(
                    user_id, chat_id, location={"latitude": lat, "longitude": lon}
                )
            }
        )

    def send_photo(self, user_id: int, chat_id: int, data: bytes) -> None:
        file_id = f"f{next(self._ids)}"
        self.files[file_id] = data
        sizes = [{"file_id": file_id, "file_size": len(data), "width": 800, "height": 600}]
        self._push({"message": self._message(user_id, chat_id, photo=sizes)})

    def answer(self, query_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while query_id not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to {query_id} in {timeout:.0f} s")
                self._lock.wait(left)
            return self.answers[query_id]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def _message(self, user_id: int, chat_id: int, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._ids),
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
            "chat": {"id": chat_id},
            "date": int(time.time()),
            **content,
        }

    def _push(self, update: dict[str, Any]) -> None:
        with self._lock:
            self._updates.append({"update_id": next(self._update_ids), **update})
            self._lock.notify_all()

    # ------------------------------------------------------------------ the server's side

    def handle(self, method: str, body: dict[str, Any]) -> Any:
        with self._lock:
            self.calls.append(method)
            if method in ("sendMessage", "sendPhoto"):
                chat_id = int(body["chat_id"])
                message_id = next(self._ids)
                markup = body.get("reply_markup")
                if isinstance(markup, str):
                    markup = json.loads(markup)
                text = body.get("text") or body.get("caption") or ""
                self.messages[(chat_id, message_id)] = Sent(
                    chat_id, message_id, text, markup, method == "sendPhoto"
                )
                self._lock.notify_all()
                return {"message_id": message_id, "chat": {"id": chat_id}}
            if method in ("editMessageText", "editMessageCaption"):
                key = (int(body["chat_id"]), int(body["message_id"]))
                sent = self.messages[key]
                sent.text = body.get("text") or body.get("caption") or ""
                sent.markup = body.get("reply_markup")
                sent.edits += 1
                self._lock.notify_all()
                return True
            if method == "answerCallbackQuery":
                self.answers[body["callback_query_id"]] = body
                self._lock.notify_all()
                return True
            if method == "getFile":
                return {"file_id": body["file_id"], "file_path": f"photos/{body['file_id']}.jpg"}
            if method == "getUpdates":
                offset = int(body.get("offset") or 0)
                deadline = time.monotonic() + min(float(body.get("timeout") or 0), 1.0)
                while True:
                    ready = [u for u in self._updates if u["update_id"] >= offset]
                    # Confirmed updates are forgotten, as Telegram does.
                    self._updates = ready
                    if ready or time.monotonic() >= deadline:
                        return ready[:100]
                    self._lock.wait(max(0.0, deadline - time.monotonic()))
        raise KeyError(method)

    def wait_for(self, what: str, check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._lock.wait(min(left, 0.5))


def _multipart(headers: Any, data: bytes) -> dict[str, Any]:
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + data
    )
    fields: dict[str, Any] = {}
    for part in parsed.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            fields[name] = part.get_payload(decode=True)
        else:
            fields[name] = part.get_content()
    return fields


@contextmanager
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            prefix = f"/file/bot{TOKEN}/photos/"
            if not self.path.startswith(prefix):
                self.send_error(404)
                return
            data = fake.files.get(self.path[len(prefix) :].removesuffix(".jpg"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            prefix = f"/bot{TOKEN}/"
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if not self.path.startswith(prefix):
                self._reply(401, {"ok": False, "description": "Unauthorized"})
                return
            content_type = self.headers.get("Content-Type", "")
            body = (
                _multipart(self.headers, data)
                if content_type.startswith("multipart/")
                else json.loads(data or b"{}")
            )
            try:
                result = fake.handle(self.path[len(prefix) :], body)
            except KeyError as exc:
                self._reply(400, {"ok": False, "description": f"Bad Request: {exc}"})
                return
            self._reply(200, {"ok": True, "result": result})

        def _reply(self, status: int, answer: dict[str, Any]) -> None:
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        with fake._lock:
            fake._lock.notify_all()
