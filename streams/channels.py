"""Sending one rendered alert over one channel: a webhook, the Telegram Bot API or e-mail.

Only the standard library, synchronous, each socket operation bounded by `notify.timeout_s`;
the notifier's outbox decides about retries from `DeliveryError.retryable`. Constructing
`Channels` touches no network. The Telegram bot token is part of every Bot API URL, so no
message or chained exception that leaves this module may contain that URL.
"""

from __future__ import annotations

import email.policy
import email.utils
import html
import http.client
import json
import logging
import mimetypes
import smtplib
import ssl
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, assert_never
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname
from uuid import UUID

from pantau.logs import scrub
from pantau.messages import Alert, EvidenceRef
from pantau.settings import NotifySettings
from streams.buttons import keyboard
from streams.routing import Delivery, redact_recipient
from streams.templates import Rendered, incident_link

log = logging.getLogger(__name__)

# Telegram counts message and caption length after parsing entities; measuring the HTML
# source in UTF-16 code units never undercounts.
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
# Bot API limit for photos uploaded with sendPhoto.
TELEGRAM_PHOTO_MAX_BYTES = 10 * 1024 * 1024
# Evidence kinds that are single images, in order of preference.
PHOTO_KINDS = ("alert", "still")
# An error body is read only this far: enough for a reason, bounded against a chatty server.
RESPONSE_READ_LIMIT = 64 * 1024
REASON_MAX_CHARS = 200
USER_AGENT = "pantau-notifier/1"


class DeliveryError(Exception):
    """A delivery failed. `retryable` says whether the same delivery may succeed later
    (network trouble, timeouts, HTTP 408/429/5xx, SMTP 4xx); `retry_after_s` is the wait the
    server asked for, when it said."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


def is_retryable_status(status: int) -> bool:
    # 408: the server gave up waiting for us, a later attempt may well succeed.
    return status in (408, 429) or status >= 500


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    body: bytes
    retry_after_s: float | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET and carry the alert to another host; a
    receiver that redirects is misconfigured, so its 3xx is an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class SentMessage:
    """A Telegram message as sent: `pantau telegram` edits it when the alarm moves on."""

    chat_id: int
    message_id: int
    with_photo: bool


class Channels:
    """Sends deliveries; holds only configuration, every call opens its own connection."""

    def __init__(self, notify: NotifySettings) -> None:
        self._notify = notify
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(
        self, delivery: Delivery, alert: Alert, rendered: Rendered, *, notification_id: UUID
    ) -> SentMessage | None:
        """Deliver once; raises DeliveryError when the receiver did not take it. A Telegram
        message comes back with its ids."""
        sent: SentMessage | None = None
        match delivery.channel:
            case "webhook":
                self._send_webhook(delivery, alert, rendered, notification_id)
            case "telegram":
                sent = self._send_telegram(delivery, alert, rendered)
            case "email":
                self._send_email(delivery, rendered, notification_id)
            case _:
                assert_never(delivery.channel)
        log.debug(
            "notification %s sent by %s to %s (route %s)",
            notification_id,
            delivery.channel,
            redact_recipient(delivery),
            delivery.route,
        )
        return sent

    def send_text(self, delivery: Delivery, rendered: Rendered, *, notification_id: UUID) -> None:
        """Deliver a message that belongs to no alarm (a weekly summary): no buttons, no
        photo; raises DeliveryError as `send` does."""
        match delivery.channel:
            case "telegram":
                self._text_telegram(delivery, rendered)
            case "email":
                self._send_email(delivery, rendered, notification_id)
            case "webhook":
                self._text_webhook(delivery, rendered, notification_id)
            case _:
                assert_never(delivery.channel)
        log.debug(
            "message %s sent by %s to %s (route %s)",
            notification_id,
            delivery.channel,
            redact_recipient(delivery),
            delivery.route,
        )

    def _text_telegram(self, delivery: Delivery, rendered: Rendered) -> None:
        token = self._notify.telegram.token
        secret = token.get_secret_value().strip() if token is not None else ""
        what = _describe(delivery)
        if not secret:
            raise DeliveryError(f"{what}: no Telegram bot token is configured", retryable=False)
        fields = {
            "chat_id": delivery.recipient,
            "text": fit_html(rendered.html, TELEGRAM_TEXT_LIMIT),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        response = self._post(
            f"{self._notify.telegram.base_url.rstrip('/')}/bot{secret}/sendMessage",
            json.dumps(fields, ensure_ascii=False).encode("utf-8"),
            {"Content-Type": "application/json"},
            what=what,
            secret=secret,
        )
        _check_telegram(what, response)

    def _text_webhook(self, delivery: Delivery, rendered: Rendered, notification_id: UUID) -> None:
        payload = {
            "notification_id": str(notification_id),
            "kind": "text",
            "subject": rendered.subject,
            "text": rendered.text,
        }
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(notification_id)}
        url, authorization = _split_credentials(delivery.recipient)
        if authorization is not None:
            headers["Authorization"] = authorization
        what = _describe(delivery)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        response = self._post(url, body, headers, what=what, secret=None)
        if not 200 <= response.status < 300:
            raise _http_error(what, response, _webhook_reason(response.body))

    # ------------------------------------------------------------------ webhook

    def _send_webhook(
        self, delivery: Delivery, alert: Alert, rendered: Rendered, notification_id: UUID
    ) -> None:
        payload = {
            "notification_id": str(notification_id),
            "alarm": alert.model_dump(mode="json"),
            "subject": rendered.subject,
            "text": rendered.text,
            "link": incident_link(alert, self._notify.incident_url),
        }
        headers = {
            "Content-Type": "application/json",
            # Receivers drop a repeat: the outbox retries after a timeout even when the
            # first attempt may have arrived.
            "Idempotency-Key": str(notification_id),
        }
        url, authorization = _split_credentials(delivery.recipient)
        if authorization is not None:
            headers["Authorization"] = authorization
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        what = _describe(delivery)
        response = self._post(url, body, headers, what=what, secret=None)
        if not 200 <= response.status < 300:
            raise _http_error(what, response, _webhook_reason(response.body))

    # ------------------------------------------------------------------ telegram

    def _send_telegram(
        self, delivery: Delivery, alert: Alert, rendered: Rendered
    ) -> SentMessage | None:
        token = self._notify.telegram.token
        secret = token.get_secret_value().strip() if token is not None else ""
        what = _describe(delivery)
        if not secret:
            raise DeliveryError(f"{what}: no Telegram bot token is configured", retryable=False)
        base = f"{self._notify.telegram.base_url.rstrip('/')}/bot{secret}"
        markup = keyboard(alert) if self._notify.telegram.buttons else None
        photo = _photo_of(alert)
        if photo is not None:
            try:
                answer = self._telegram_photo(
                    base, delivery, rendered, photo, markup, what=what, secret=secret
                )
                return _sent(answer, with_photo=True)
            except DeliveryError as exc:
                if exc.retryable:
                    raise
                # A photo Telegram refuses (too large once decoded, unreadable) must not
                # keep the alert itself from arriving.
                log.warning("%s: photo refused, sending the text alone: %s", what, exc)
        fields = {
            "chat_id": delivery.recipient,
            "text": fit_html(rendered.html, TELEGRAM_TEXT_LIMIT),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        if markup is not None:
            fields["reply_markup"] = markup
        body = json.dumps(fields, ensure_ascii=False).encode("utf-8")
        response = self._post(
            f"{base}/sendMessage",
            body,
            {"Content-Type": "application/json"},
            what=what,
            secret=secret,
        )
        return _sent(_check_telegram(what, response), with_photo=False)

    def _telegram_photo(
        self,
        base: str,
        delivery: Delivery,
        rendered: Rendered,
        photo: Path,
        markup: dict[str, Any] | None,
        *,
        what: str,
        secret: str,
    ) -> dict[str, Any]:
        fields = {
            "chat_id": delivery.recipient,
            "caption": fit_html(rendered.html, TELEGRAM_CAPTION_LIMIT),
            "parse_mode": "HTML",
        }
        if markup is not None:
            fields["reply_markup"] = json.dumps(markup)
        content_type = mimetypes.guess_type(photo.name)[0] or "application/octet-stream"
        try:
            data = photo.read_bytes()
        except OSError as exc:
            raise DeliveryError(
                f"{what}: cannot read evidence photo {photo}: {exc.strerror}", retryable=False
            ) from exc
        body, multipart_type = _multipart(fields, "photo", photo.name, content_type, data)
        response = self._post(
            f"{base}/sendPhoto", body, {"Content-Type": multipart_type}, what=what, secret=secret
        )
        return _check_telegram(what, response)

    # ------------------------------------------------------------------ e-mail

    def _send_email(self, delivery: Delivery, rendered: Rendered, notification_id: UUID) -> None:
        settings = self._notify.email
        what = _describe(delivery)
        # 7-bit transfer encodings (quoted-printable, base64) for the Indonesian text and
        # emoji: not every relay in the chain announces 8BITMIME.
        message = EmailMessage(policy=email.policy.default.clone(cte_type="7bit"))
        try:
            message["Subject"] = rendered.subject
            message["From"] = settings.sender
            message["To"] = delivery.recipient
            message["Date"] = email.utils.format_datetime(datetime.now(UTC))
            # Stable per notification, so a repeat after a lost reply can be recognised.
            message["Message-ID"] = f"<{notification_id}@pantau>"
            message.set_content(rendered.text)
            message.add_alternative(_email_html(rendered), subtype="html")
        except ValueError as exc:
            raise DeliveryError(
                f"{what}: cannot build the message: {exc}", retryable=False
            ) from exc
        where = f"{what} via SMTP {settings.host}:{settings.port}"
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=self._notify.timeout_s) as smtp:
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.username:
                    password = settings.password.get_secret_value() if settings.password else ""
                    smtp.login(settings.username, password)
                smtp.send_message(message, from_addr=settings.sender, to_addrs=[delivery.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            reasons = "; ".join(
                f"{code} {_smtp_text(text)}" for code, text in exc.recipients.values()
            )
            raise DeliveryError(
                f"{where}: recipient refused: {reasons}",
                retryable=all(400 <= code < 500 for code in codes),
                status=codes[0] if codes else None,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where}: SMTP {exc.smtp_code} {_smtp_text(exc.smtp_error)}",
                retryable=400 <= exc.smtp_code < 500,
                status=exc.smtp_code,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc}", retryable=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Connection refused or reset, timeouts, TLS failures, a dropped session.
            raise DeliveryError(
                f"{where}: {_short(str(exc)) or type(exc).__name__}", retryable=True
            ) from exc

    # ------------------------------------------------------------------ HTTP

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], *, what: str, secret: str | None
    ) -> _Response:
        """POST and read the answer; any HTTP status comes back, transport failures raise."""
        try:
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                # Checked here, not left to urllib: its error would quote the whole URL.
                raise DeliveryError(f"{what}: not an http(s) URL", retryable=False)
            request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
                url, data=body, headers={"User-Agent": USER_AGENT, **headers}, method="POST"
            )
            with self._opener.open(request, timeout=self._notify.timeout_s) as answer:
                return _Response(
                    answer.status,
                    answer.reason,
                    answer.read(RESPONSE_READ_LIMIT),
                    None,
                )
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    data = exc.read(RESPONSE_READ_LIMIT)
                except OSError:
                    data = b""
                return _Response(exc.code, exc.reason, data, _retry_after(exc.headers))
        except (ValueError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # URLError wraps refused connections, DNS failures and malformed URLs; OSError
            # and HTTPException cover timeouts, resets and garbled answers.
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ValueError | http.client.InvalidURL):
                # A bad port, control characters: the error quotes the URL, with the bot
                # token or a webhook's query in it, so neither it nor its text goes further.
                raise DeliveryError(
                    f"{what}: malformed URL ({type(reason).__name__})", retryable=False
                ) from None
            text = _short(str(reason)) or type(reason).__name__
            # Transport errors do not quote the URL, but the token must never show: make sure.
            leaks = secret is not None and (secret in str(exc) or secret in repr(exc))
            if secret is not None:
                text = text.replace(secret, "***")
            raise DeliveryError(f"{what}: {text}", retryable=True) from (None if leaks else exc)


def _sent(answer: dict[str, Any], *, with_photo: bool) -> SentMessage | None:
    """The chat and message ids of what the Bot API sent (None if it did not say)."""
    result = answer.get("result")
    if not isinstance(result, dict):
        return None
    chat = result.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    message_id = result.get("message_id")
    if not isinstance(chat_id, int) or not isinstance(message_id, int):
        return None
    return SentMessage(chat_id, message_id, with_photo)


def _check_telegram(what: str, response: _Response) -> dict[str, Any]:
    """The Bot API's answer, if it took the message."""
    try:
        answer = json.loads(response.body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    if 200 <= response.status < 300 and answer.get("ok") is True:
        return answer
    description = answer.get("description")
    reason = _short(description) if isinstance(description, str) else ""
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        response = _Response(response.status, response.reason, response.body, float(retry_after))
    if 200 <= response.status < 300:
        raise DeliveryError(
            f"{what}: Bot API answered HTTP {response.status} without ok: {reason or '?'}",
            retryable=False,
            status=response.status,
        )
    raise _http_error(what, response, reason)


def _http_error(what: str, response: _Response, server_reason: str) -> DeliveryError:
    message = f"{what}: HTTP {response.status} {response.reason}".rstrip()
    # Telegram repeats the status phrase: "Bad Request: chat not found".
    if response.reason and server_reason.startswith(response.reason):
        server_reason = server_reason[len(response.reason) :].lstrip(": ")
    if server_reason:
        message += f": {server_reason}"
    if response.retry_after_s is not None and "retry after" not in message.lower():
        message += f" (retry after {response.retry_after_s:g} s)"
    return DeliveryError(
        message,
        retryable=is_retryable_status(response.status),
        status=response.status,
        retry_after_s=response.retry_after_s,
    )


def _retry_after(headers: Any) -> float | None:
    """The Retry-After header in seconds (its HTTP-date form is rare for APIs: ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _webhook_reason(body: bytes) -> str:
    """A receiver's own words: a JSON error field, or the first line of a text answer (an
    HTML error page says nothing the status line does not)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(text)
    except ValueError:
        return "" if text.startswith("<") else _short(text)
    if isinstance(answer, dict):
        for key in ("error", "message", "description", "detail"):
            if isinstance(answer.get(key), str):
                return _short(answer[key])
    return _short(text)


def _describe(delivery: Delivery) -> str:
    return f"{delivery.channel} to {redact_recipient(delivery)} (route {delivery.route})"


def _short(text: str) -> str:
    """The first line of a server's answer, scrubbed and cut, to quote in an error."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = scrub(line)
    return line if len(line) <= REASON_MAX_CHARS else line[: REASON_MAX_CHARS - 1] + "…"


def _smtp_text(raw: bytes | str) -> str:
    return _short(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user:password, and those as a Basic Authorization header value;
    urllib would otherwise take them for part of the host name."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return url, None
    if username is None:
        return url, None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    credentials = f"{unquote(username)}:{unquote(password or '')}".encode()
    return plain, "Basic " + b64encode(credentials).decode("ascii")


def _photo_of(alert: Alert) -> Path | None:
    """The alert's evidence image as a local file, when there is one to upload."""
    refs: list[EvidenceRef] = sorted(
        (ref for ref in alert.evidence if ref.kind in PHOTO_KINDS),
        key=lambda ref: PHOTO_KINDS.index(ref.kind),
    )
    for ref in refs:
        path = _local_path(ref.uri)
        if path is None:
            continue
        content_type = mimetypes.guess_type(path.name)[0] or ""
        try:
            usable = (
                path.is_file()
                and content_type.startswith("image/")
                and path.stat().st_size <= TELEGRAM_PHOTO_MAX_BYTES
            )
        except OSError:
            usable = False
        if usable:
            return path
    return None


def _local_path(uri: str) -> Path | None:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(unquote(parts.path)))


def _multipart(
    fields: dict[str, str], file_field: str, filename: str, content_type: str, data: bytes
) -> tuple[bytes, str]:
    boundary = f"pantau-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    # Quotes and line breaks would end the header; the name is only a hint to Telegram.
    safe_name = "".join(c for c in filename if c.isprintable() and c not in '"\\') or "photo"
    chunks.append(
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{file_field}"; filename="{safe_name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def fit_html(text: str, limit: int) -> str:
    """The rendered HTML shortened to `limit` (UTF-16 code units, as Telegram counts).

    Whole lines go first, from the end but keeping the headline and the last line (the
    incident link); then the link; a headline still too long loses its markup and is cut.
    """
    if _utf16_len(text) <= limit:
        return text
    ellipsis = "…"
    first, *rest = text.split("\n")
    middle, last = rest[:-1], rest[-1:]
    for keep in range(len(middle) - 1, -1, -1):
        candidate = "\n".join([first, *middle[:keep], ellipsis, *last])
        if _utf16_len(candidate) <= limit:
            return candidate
    candidate = f"{first}\n{ellipsis}"
    if _utf16_len(candidate) <= limit:
        return candidate
    cut = html.escape(_strip_tags(first))[:limit]
    while cut and _utf16_len(cut + ellipsis) > limit:
        cut = cut[:-1]
    # Never leave half an entity such as "&am".
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ellipsis


def _strip_tags(fragment: str) -> str:
    out: list[str] = []
    inside = False
    for char in fragment:
        if char == "<":
            inside = True
        elif char == ">":
            inside = False
        elif not inside:
            out.append(char)
    return html.unescape("".join(out))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _email_html(rendered: Rendered) -> str:
    body = rendered.html.replace("\n", "<br>\n")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(rendered.subject)}</title></head>\n"
        f'<body style="font-family: sans-serif; line-height: 1.5">\n{body}\n</body></html>\n'
    )
