"""The incident console's wiring: the REST API under /api/v1 (its OpenAPI document at
/api/v1/openapi.json is generated from these routes), the pages, log in and out, and the
live feed. The one place the console's parts are put together.

People act through the same path as every other tool: an action is published on
alerts.actions.v1 and the stream processor decides it. The API answers once the broker has
the action (202, with its id); the new state, or the refusal and its reason, comes back
through the live feed and GET /api/v1/actions/{id}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from kafka import KafkaProducer
from pydantic import BaseModel, Field

from console import auth
from console.chart import svg_chart
from console.evidence import EvidenceFiles, EvidenceUnavailable, refs
from console.i18n import LANGUAGES, Language, when, words
from console.live import Feed, Hub, Place
from console.store import AlarmFilter, NoSuchUser, Record, Store, UserExists
from pantau import kafka, roles
from pantau.evidence_store import BadPhoto
from pantau.ids import SeqCounter, utcnow, uuid7
from pantau.messages import (
    ACTION_APPLIES_TO,
    AlarmAction,
    EvidenceRef,
    FalsePositiveReason,
)
from pantau.roles import AlarmScope, User
from pantau.runtime import alive
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "pantau_session"
LOGIN_CSRF_COOKIE = "pantau_login_csrf"
LANG_COOKIE = "pantau_lang"
CSRF_HEADER = "x-csrf-token"
EVIDENCE_KINDS = ("before", "alert", "owner", "clip")
FP_REASONS: tuple[str, ...] = (
    "not_rubbish",
    "belongs_there",
    "person_present",
    "camera_moved",
    "other",
)
# How long the API waits for the broker to take an action before answering 503.
_PUBLISH_TIMEOUT_S = 10.0
# The place of each camera and sensor is read again this often (the registry changes with
# `pantau migrate`, rarely).
_REGISTRY_TTL_S = 60.0
_KEEPALIVE_S = 15.0


class ActionPath(StrEnum):
    ack = "ack"
    dispatch = "dispatch"
    resolve = "resolve"
    false_positive = "false-positive"
    comment = "comment"
    assign = "assign"


# --------------------------------------------------------------------------- API models


class EvidenceOut(BaseModel):
    kind: str
    url: str
    sha256: str
    original_url: str | None = Field(None, description="unblurred original, for roles that may")


class AlarmOut(BaseModel):
    alarm_id: UUID
    version: int
    source_kind: str
    source_id: str
    alarm_type: str
    severity: str
    state: str
    change: str | None
    count: int
    last_value: float | None
    quantity: str | None
    threshold: float | None
    message: str
    event_id: UUID | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    resolved_at: datetime | None
    cleared_at: datetime | None
    assignee: str | None
    dispatched_to: str | None
    place_name: str | None
    desa: str | None
    kecamatan: str | None
    lat: float | None
    lon: float | None
    url: str = Field(description="the incident's console page")
    actions: list[str] = Field(description="what the caller may do now")


class AlarmPage(BaseModel):
    items: list[AlarmOut]
    next_offset: int | None = Field(None, description="offset of the next page; none: last")


class HistoryEntry(BaseModel):
    entry: Literal["version", "refused"]
    time: datetime
    version: int | None
    state: str | None
    change: str | None
    severity: str | None
    message: str
    by: str
    device: str
    note: str
    reason: str | None
    assignee: str | None
    dispatched_to: str | None
    action_id: UUID | None
    action: str | None = None
    refused: str | None = None
    photo_url: str | None = None
    lat: float | None = Field(None, description="where the person stood, if they sent it")
    lon: float | None = None


class EventOut(BaseModel):
    event_id: UUID
    camera_id: str
    camera_name: str | None
    zone_id: str | None = None
    state: str
    phase: str
    version: int
    appeared_at: datetime
    alerted_at: datetime | None
    ended_at: datetime | None
    confidence: float
    box: list[float] | None = Field(None, description="x1, y1, x2, y2 in the frame's pixels")
    desa: str | None
    kecamatan: str | None
    evidence: list[EvidenceOut]
    evidence_error: str | None
    alarm_id: UUID | None = None


class EventPage(BaseModel):
    items: list[EventOut]
    next_offset: int | None = None


class AlarmDetail(BaseModel):
    alarm: AlarmOut
    history: list[HistoryEntry]
    event: EventOut | None
    evidence: list[EvidenceOut]


class SourceOut(BaseModel):
    kind: Literal["camera", "sensor"]
    id: str
    name: str
    type: str | None
    desa: str | None
    kecamatan: str | None
    lat: float | None
    lon: float | None
    last_seen: datetime | None
    status: str | None
    fps: float | None
    open_alarms: int


class ActionAccepted(BaseModel):
    action_id: UUID
    alarm_id: UUID
    action: str
    status: Literal["accepted"] = "accepted"
    outcome_url: str


class ActionOutcome(BaseModel):
    action_id: UUID
    status: Literal["pending", "applied", "refused"]
    version: int | None = None
    reason: str | None = None


class UserIn(BaseModel):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    role: roles.Role
    display_name: str = Field("", max_length=200)
    kecamatan: list[str] = Field(default_factory=list, max_length=50)
    password: str | None = Field(None, min_length=auth.MIN_PASSWORD_LENGTH, max_length=200)


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    kecamatan: list[str]
    disabled: bool
    tokens: int = 0


class TokenOut(BaseModel):
    token: str = Field(description="shown once; send it as Authorization: Bearer <token>")
    token_id: str


# --------------------------------------------------------------------------- the parts


@dataclass
class Principal:
    user: User
    # The session's CSRF token; None for an API token (no cookie, nothing to forge).
    csrf: str | None
    session_hash: str | None
    via: Literal["console", "api"]


class Console:
    """The console's parts, made at start-up and shared by every request."""

    def __init__(self, settings: Settings, store: Store, producer: KafkaProducer) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.topics = Topics(settings.kafka)
        self.tz = ZoneInfo(settings.timezone)
        self.limiter = auth.LoginLimiter(
            settings.console.login_attempts, settings.console.login_window_s
        )
        self.evidence = EvidenceFiles(settings.dumping.evidence.dir)
        self.session_lifetime = timedelta(hours=settings.console.session_hours)
        self.seq = SeqCounter()
        self.hub: Hub | None = None
        self.feed: Feed | None = None
        self._registry: dict[tuple[str, str], Place] = {}
        self._registry_at = 0.0

    def place(self, source_kind: str, source_id: str) -> Place | None:
        kind = "sensor" if source_kind == "sensor" else "camera"
        if time.monotonic() - self._registry_at > _REGISTRY_TTL_S or (
            (kind, source_id) not in self._registry and time.monotonic() - self._registry_at > 5.0
        ):
            self._registry = {
                (r["kind"], r["id"]): Place(
                    r["name"], r["desa"], r["kecamatan"], r["lat"], r["lon"], r["type"]
                )
                for r in self.store.registry()
            }
            self._registry_at = time.monotonic()
        return self._registry.get((kind, source_id))

    def public(self, path: str) -> str:
        return f"{self.settings.console.public_url.rstrip('/')}{path}"


def _scope(row: Record) -> AlarmScope:
    return AlarmScope(row["source_kind"], row.get("sensor_type"), row.get("kecamatan"))


def allowed_actions(user: User, row: Record) -> list[str]:
    if not roles.can_act(user, _scope(row)):
        return []
    return [a for a in roles.ACTIONS if row["state"] in ACTION_APPLIES_TO[a]]


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _device(request: Request, via: str) -> str:
    agent = request.headers.get("user-agent", "")
    if via == "api":
        return "api"
    kind = "phone" if "Mobile" in agent or "Android" in agent else "desktop"
    return f"console ({kind})"


# --------------------------------------------------------------------------- who is asking


def the_console(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


ConsoleDep = Annotated[Console, Depends(the_console)]


def identify(request: Request, c: Console) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        parts = auth.split_token(token.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            return None
        found = c.store.token_user(parts[0])
        if found is None or not auth.same(found[1], auth.digest(parts[1])):
            return None
        return Principal(found[0], None, None, "api")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    session_hash = auth.digest(cookie)
    found_session = c.store.session(session_hash, c.session_lifetime)
    if found_session is None:
        return None
    return Principal(found_session[0], found_session[1], session_hash, "console")


def api_principal(request: Request, c: ConsoleDep) -> Principal:
    who = identify(request, c)
    if who is None:
        raise HTTPException(
            401, "log in, or send an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


def page_principal(request: Request, c: ConsoleDep) -> Principal:
    who = identify(request, c)
    if who is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, headers={"Location": f"/login?next={quote(target)}"})
    return who


def check_csrf(request: Request, who: Principal, form_token: str | None = None) -> None:
    if who.csrf is None:
        return
    sent = request.headers.get(CSRF_HEADER) or form_token or ""
    if not sent or not auth.same(sent, who.csrf):
        raise HTTPException(403, "missing or wrong CSRF token")


ApiUser = Annotated[Principal, Depends(api_principal)]
PageUser = Annotated[Principal, Depends(page_principal)]


# --------------------------------------------------------------------------- the app


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    producer: KafkaProducer | None = None,
    live: bool = True,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """The console as an ASGI app. `store` and `producer` are opened at start-up unless
    given; `live` starts the Kafka feed of the live pages."""

    console_box: list[Console] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = store or Store(settings)
        db.open()
        kafka.wait_until_ready(settings.kafka)
        kafka.ensure_topics(settings.kafka, Topics(settings.kafka).specs())
        prod = producer or kafka.producer(settings.kafka, "console")
        c = Console(settings, db, prod)
        c.hub = Hub(asyncio.get_running_loop())
        if live:
            c.feed = Feed(settings, c.hub, c.place)
            await asyncio.to_thread(c.feed.start)
        console_box.append(c)
        app.state.console = c
        beat = asyncio.create_task(_heartbeat(c, on_fatal))
        log.info("console: ready at %s", settings.console.public_url)
        try:
            yield
        finally:
            beat.cancel()
            if c.feed is not None:
                await asyncio.to_thread(c.feed.stop)
            if producer is None:
                prod.close(timeout=10)
            if store is None:
                db.close()

    app = FastAPI(
        title="Pantau incident console",
        version="1",
        description="Alarms, their evidence and history; actions on them. Every call needs a "
        "session cookie (the pages) or an API token (Authorization: Bearer pt_...).",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    def language(request: Request, c: Console) -> Language:
        asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        if asked in LANGUAGES:
            return asked
        return c.settings.console.language

    # ---------------------------------------------------------------- shaping

    def alarm_out(c: Console, user: User, row: Record) -> AlarmOut:
        return AlarmOut.model_validate(
            {
                **row,
                "url": c.public(f"/incidents/{row['alarm_id']}"),
                "actions": [a.replace("_", "-") for a in allowed_actions(user, row)],
            }
        )

    def evidence_out(
        user: User, base: str, items: list[EvidenceRef], *, kinds: tuple[str, ...] = ()
    ) -> list[EvidenceOut]:
        out = []
        for ref in items:
            if kinds and ref.kind not in kinds:
                continue
            original = f"{base}/{ref.kind}?original=true" if roles.can_see_originals(user) else None
            out.append(
                EvidenceOut(
                    kind=ref.kind,
                    url=f"{base}/{ref.kind}",
                    sha256=ref.sha256,
                    original_url=original,
                )
            )
        return out

    def event_out(user: User, row: Record, alarm_id: UUID | None = None) -> EventOut:
        base = (
            f"/api/v1/alarms/{alarm_id}/evidence"
            if alarm_id
            else f"/api/v1/events/{row['event_id']}/evidence"
        )
        box = [row["x1"], row["y1"], row["x2"], row["y2"]] if row.get("x1") is not None else None
        return EventOut.model_validate(
            {
                **row,
                "box": box,
                "alarm_id": alarm_id or row.get("alarm_id"),
                "evidence": evidence_out(user, base, refs(row["evidence"])),
            }
        )

    def visible_alarm(c: Console, who: Principal, alarm_id: UUID) -> Record:
        row = c.store.alarm(alarm_id)
        # Someone who may not see an alarm learns nothing of it, not even that it exists.
        if row is None or not roles.can_see(who.user, _scope(row)):
            raise HTTPException(404, f"no alarm {alarm_id}")
        return row

    def detail(c: Console, who: Principal, row: Record) -> AlarmDetail:
        alarm_id = row["alarm_id"]
        history = []
        for h in c.store.history(alarm_id, row["opened_at"]):
            photo_url = (
                f"/api/v1/alarms/{alarm_id}/photos/{h['action_id']}"
                if h.get("photo") and h.get("action_id")
                else None
            )
            history.append(HistoryEntry.model_validate({**h, "photo_url": photo_url}))
        event = None
        evidence: list[EvidenceOut] = []
        if row["event_id"] is not None:
            event_row = c.store.event(row["event_id"])
            if event_row is not None:
                event = event_out(who.user, event_row, alarm_id)
                evidence = event.evidence
        return AlarmDetail(
            alarm=alarm_out(c, who.user, row), history=history, event=event, evidence=evidence
        )

    # ---------------------------------------------------------------- API: alarms

    def alarm_filter(
        state: list[str] | None,
        type_: list[str] | None,
        desa: list[str] | None,
        kecamatan: list[str] | None,
        source: list[str] | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        offset: int,
    ) -> AlarmFilter:
        def clean(values: list[str] | None) -> tuple[str, ...]:
            return tuple(v for v in (values or ()) if v)

        return AlarmFilter(
            state=tuple(s.upper() for s in clean(state)),
            alarm_type=clean(type_),
            desa=clean(desa),
            kecamatan=clean(kecamatan),
            source=clean(source),
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    @app.get("/api/v1/alarms", response_model=AlarmPage, tags=["alarms"])
    def list_alarms(
        c: ConsoleDep,
        who: ApiUser,
        state: Annotated[list[str] | None, Query(description="OPEN, ACK, ...")] = None,
        type_: Annotated[list[str] | None, Query(alias="type")] = None,
        desa: Annotated[list[str] | None, Query()] = None,
        kecamatan: Annotated[list[str] | None, Query()] = None,
        source: Annotated[list[str] | None, Query(description="camera or sensor id")] = None,
        since: Annotated[datetime | None, Query(description="opened at or after")] = None,
        until: Annotated[datetime | None, Query(description="opened before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> AlarmPage:
        f = alarm_filter(state, type_, desa, kecamatan, source, since, until, limit, offset)
        rows = c.store.alarms(who.user, f)
        more = len(rows) > limit
        return AlarmPage(
            items=[alarm_out(c, who.user, r) for r in rows[:limit]],
            next_offset=offset + limit if more else None,
        )

    @app.get("/api/v1/alarms/{alarm_id}", response_model=AlarmDetail, tags=["alarms"])
    def get_alarm(alarm_id: UUID, c: ConsoleDep, who: ApiUser) -> AlarmDetail:
        return detail(c, who, visible_alarm(c, who, alarm_id))

    @app.post(
        "/api/v1/alarms/{alarm_id}/{action}",
        response_model=ActionAccepted,
        status_code=202,
        tags=["actions"],
        responses={
            400: {"description": "the action is missing what it needs"},
            403: {"description": "the caller may see this alarm but not act on it"},
            503: {"description": "the broker did not take the action; try again"},
        },
    )
    def act(
        alarm_id: UUID,
        action: ActionPath,
        request: Request,
        c: ConsoleDep,
        who: ApiUser,
        note: Annotated[str, Form(max_length=4000)] = "",
        to: Annotated[str | None, Form(max_length=200, description="dispatch/assign")] = None,
        reason: Annotated[FalsePositiveReason | None, Form()] = None,
        photo: Annotated[UploadFile | None, File(description="resolve: the cleaned spot")] = None,
        csrf: Annotated[str | None, Form()] = None,
    ) -> ActionAccepted:
        check_csrf(request, who, csrf)
        row = visible_alarm(c, who, alarm_id)
        name = action.name
        if not roles.can_act(who.user, _scope(row)):
            raise HTTPException(403, f"{who.user.role} may not act on this alarm")
        note = note.strip()
        to = (to or "").strip() or None
        if name in ("dispatch", "assign") and not to:
            raise HTTPException(400, f"{action.value} needs `to`: whom")
        if name == "comment" and not note:
            raise HTTPException(400, "a comment needs a note")
        if name == "false_positive" and reason is None:
            raise HTTPException(
                400, f"false-positive needs a reason: one of {', '.join(FP_REASONS)}"
            )
        if name != "false_positive" and reason is not None:
            raise HTTPException(400, "a reason goes with false-positive only")
        if name not in ("dispatch", "assign"):
            to = None
        action_id = uuid7()
        ref: EvidenceRef | None = None
        if photo is not None and photo.filename:
            if name not in ("resolve", "comment"):
                raise HTTPException(400, "a photo goes with resolve or comment")
            data = photo.file.read(c.settings.console.max_upload_bytes + 1)
            if len(data) > c.settings.console.max_upload_bytes:
                raise HTTPException(413, "the photo is larger than console.max_upload_bytes")
            try:
                ref = c.evidence.store_photo(alarm_id, action_id, data)
            except BadPhoto as exc:
                raise HTTPException(400, str(exc)) from exc
        message = AlarmAction(
            id=action_id,
            ts_capture=utcnow(),
            seq=next(c.seq),
            action=name,
            source_kind=row["source_kind"],
            source_id=row["source_id"],
            alarm_id=alarm_id,
            by=who.user.username,
            note=note,
            device=_device(request, who.via),
            to=to,
            reason=reason,
            photo=ref,
        )
        try:
            kafka.publish(c.producer, c.topics.alarm_actions, message).get(
                timeout=_PUBLISH_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("action %s on %s not taken by the broker: %s", name, alarm_id, exc)
            raise HTTPException(
                503, "the action could not be sent; try again", headers={"Retry-After": "5"}
            ) from exc
        c.store.audit(
            who.user.username,
            f"action:{name}",
            str(alarm_id),
            _client(request),
            action_id=str(action_id),
            device=message.device,
        )
        return ActionAccepted(
            action_id=action_id,
            alarm_id=alarm_id,
            action=action.value,
            outcome_url=f"/api/v1/actions/{action_id}",
        )

    @app.get("/api/v1/actions/{action_id}", response_model=ActionOutcome, tags=["actions"])
    def action_outcome(action_id: UUID, c: ConsoleDep, who: ApiUser) -> ActionOutcome:
        assert c.hub is not None
        known = c.hub.outcomes.get(action_id) or c.store.action_outcome(action_id)
        if known is None:
            return ActionOutcome(action_id=action_id, status="pending")
        return ActionOutcome(action_id=action_id, **known)

    # ---------------------------------------------------------------- API: evidence

    def serve(
        c: Console, who: Principal, request: Request, ref: EvidenceRef, original: bool, target: str
    ) -> Response:
        if original and not roles.can_see_originals(who.user):
            raise HTTPException(403, "unblurred originals are for operators")
        try:
            artefact = c.evidence.artefact(ref, original=original)
        except EvidenceUnavailable as exc:
            raise HTTPException(exc.status, exc.reason) from exc
        # Each opening is recorded; a video player's further ranges of the clip are not.
        if not request.headers.get("range", "").startswith("bytes=") or request.headers.get(
            "range", ""
        ).startswith("bytes=0-"):
            c.store.audit(
                who.user.username,
                "evidence",
                target,
                _client(request),
                kind=ref.kind,
                original=original,
                sha256=artefact.sha256,
            )
        return FileResponse(
            artefact.path,
            media_type=artefact.media_type,
            headers={
                "Cache-Control": "private, max-age=300",
                "X-Content-SHA256": artefact.sha256,
            },
        )

    def evidence_ref(items: list[EvidenceRef], kind: str) -> EvidenceRef:
        for ref in items:
            if ref.kind == kind:
                return ref
        raise HTTPException(404, f"no {kind} in this evidence pack")

    @app.get(
        "/api/v1/alarms/{alarm_id}/evidence/{kind}",
        tags=["evidence"],
        response_class=Response,
        responses={200: {"description": "the artefact (image/jpeg, video/webm); Range works"}},
    )
    def alarm_evidence(
        alarm_id: UUID,
        kind: str,
        request: Request,
        c: ConsoleDep,
        who: ApiUser,
        original: bool = False,
    ) -> Response:
        row = visible_alarm(c, who, alarm_id)
        if row["event_id"] is None:
            raise HTTPException(404, "this alarm has no evidence")
        event = c.store.event(row["event_id"])
        if event is None:
            raise HTTPException(404, "this alarm has no evidence yet")
        ref = evidence_ref(refs(event["evidence"]), kind)
        return serve(c, who, request, ref, original, str(alarm_id))

    @app.get(
        "/api/v1/alarms/{alarm_id}/photos/{action_id}",
        tags=["evidence"],
        response_class=Response,
    )
    def action_photo(
        alarm_id: UUID, action_id: UUID, request: Request, c: ConsoleDep, who: ApiUser
    ) -> Response:
        visible_alarm(c, who, alarm_id)
        found = c.store.photo_of(alarm_id, action_id)
        if found is None:
            raise HTTPException(404, "no photo with this action")
        [ref] = refs(found["photo"])
        return serve(c, who, request, ref, False, str(alarm_id))

    # ---------------------------------------------------------------- API: events, sources

    @app.get("/api/v1/events", response_model=EventPage, tags=["events"])
    def list_events(
        c: ConsoleDep,
        who: ApiUser,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> EventPage:
        if who.user.role == "dlh_field" or roles.sees_everything(who.user):
            rows = c.store.events(who.user, since, limit, offset)
        else:
            rows = []
        return EventPage(
            items=[event_out(who.user, r) for r in rows[:limit]],
            next_offset=offset + limit if len(rows) > limit else None,
        )

    def visible_event(c: Console, who: Principal, event_id: UUID) -> Record:
        row = c.store.event(event_id)
        scope = AlarmScope("dumping", None, row["kecamatan"] if row else None)
        if row is None or not roles.can_see(who.user, scope):
            raise HTTPException(404, f"no dumping event {event_id}")
        return row

    @app.get("/api/v1/events/{event_id}", response_model=EventOut, tags=["events"])
    def get_event(event_id: UUID, c: ConsoleDep, who: ApiUser) -> EventOut:
        return event_out(who.user, visible_event(c, who, event_id))

    @app.get(
        "/api/v1/events/{event_id}/evidence/{kind}", tags=["evidence"], response_class=Response
    )
    def event_evidence(
        event_id: UUID,
        kind: str,
        request: Request,
        c: ConsoleDep,
        who: ApiUser,
        original: bool = False,
    ) -> Response:
        row = visible_event(c, who, event_id)
        ref = evidence_ref(refs(row["evidence"]), kind)
        return serve(c, who, request, ref, original, str(event_id))

    @app.get("/api/v1/sources", response_model=list[SourceOut], tags=["sources"])
    def list_sources(c: ConsoleDep, who: ApiUser) -> list[SourceOut]:
        out = []
        for r in c.store.sources():
            if who.user.role == "dlh_field" and (r["kecamatan"] or "").casefold() not in {
                k.casefold() for k in who.user.kecamatan
            }:
                continue
            out.append(SourceOut.model_validate({**r, "name": r["name"] or r["id"]}))
        return out

    # ---------------------------------------------------------------- API: live

    @app.get(
        "/api/v1/stream",
        tags=["live"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `alarm` (an alarm's new state) and "
                "`refused` (an action the stream processor refused, with its reason)",
                "content": {"text/event-stream": {}},
            }
        },
    )
    async def stream(request: Request, who: ApiUser) -> StreamingResponse:
        c: Console = request.app.state.console
        assert c.hub is not None
        hub = c.hub
        key, queue = hub.subscribe(who.user)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n: connected\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is None:
                        return
                    yield event.sse()
            finally:
                hub.unsubscribe(key)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ---------------------------------------------------------------- API: users

    def admin(who: Principal) -> None:
        if not roles.can_manage_users(who.user):
            raise HTTPException(403, "only admins manage users")

    @app.get("/api/v1/users", response_model=list[UserOut], tags=["users"])
    def list_users(c: ConsoleDep, who: ApiUser) -> list[UserOut]:
        admin(who)
        return [UserOut.model_validate(u) for u in c.store.users()]

    @app.post("/api/v1/users", response_model=UserOut, status_code=201, tags=["users"])
    def add_user(body: UserIn, request: Request, c: ConsoleDep, who: ApiUser) -> UserOut:
        check_csrf(request, who)
        admin(who)
        if body.role == "dlh_field" and not body.kecamatan:
            raise HTTPException(400, "a dlh_field user needs at least one kecamatan")
        try:
            c.store.add_user(
                body.username,
                body.role,
                auth.hash_password(body.password) if body.password else None,
                display_name=body.display_name,
                kecamatan=body.kecamatan,
            )
        except UserExists as exc:
            raise HTTPException(409, str(exc)) from exc
        c.store.audit(
            who.user.username, "user:add", body.username, _client(request), role=body.role
        )
        return UserOut(
            username=body.username,
            display_name=body.display_name,
            role=body.role,
            kecamatan=body.kecamatan,
            disabled=False,
        )

    @app.post("/api/v1/users/{username}/disable", status_code=204, tags=["users"])
    def disable_user(username: str, request: Request, c: ConsoleDep, who: ApiUser) -> Response:
        check_csrf(request, who)
        admin(who)
        try:
            c.store.disable_user(username)
        except NoSuchUser as exc:
            raise HTTPException(404, str(exc)) from exc
        c.store.audit(who.user.username, "user:disable", username, _client(request))
        return Response(status_code=204)

    @app.post(
        "/api/v1/users/{username}/tokens", response_model=TokenOut, status_code=201, tags=["users"]
    )
    def add_token(
        username: str, request: Request, c: ConsoleDep, who: ApiUser, name: str = ""
    ) -> TokenOut:
        check_csrf(request, who)
        admin(who)
        if c.store.login_record(username) is None:
            raise HTTPException(404, f"no user {username!r}")
        token_id, secret, token = auth.new_token()
        c.store.add_token(username, token_id, auth.digest(secret), name)
        c.store.audit(who.user.username, "token:add", username, _client(request), token_id=token_id)
        return TokenOut(token=token, token_id=token_id)

    # ---------------------------------------------------------------- health

    @app.get("/healthz", include_in_schema=False)
    def health(c: ConsoleDep) -> JSONResponse:
        feed_ok = c.feed is None or c.feed.alive
        db_ok = c.store.ping()
        ok = feed_ok and db_ok
        return JSONResponse(
            {"ok": ok, "database": db_ok, "live_feed": feed_ok}, status_code=200 if ok else 503
        )

    # ---------------------------------------------------------------- pages

    def render(
        request: Request,
        c: Console,
        name: str,
        who: Principal | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        lang = language(request, c)
        response = templates.TemplateResponse(
            request,
            name,
            {
                "w": words(lang),
                "lang": lang,
                "other_lang": "en" if lang == "id" else "id",
                "user": who.user if who else None,
                "csrf": who.csrf if who else None,
                "when": lambda v: when(v, lang, c.tz),
                "iso": lambda v: v.isoformat() if v else "",
                "site": c.settings.site,
                **context,
            },
            status_code=status_code,
        )
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True
            )
        return response

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/incidents", status_code=303)

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_page(request: Request, c: ConsoleDep, next: str = "/incidents") -> HTMLResponse:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or auth.new_csrf_token()
        response = render(request, c, "login.html", None, next=_safe_next(next), login_csrf=token)
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=c.settings.console.cookies_secure,
            max_age=3600,
        )
        return response

    @app.post("/login", include_in_schema=False, response_class=HTMLResponse)
    def login(
        request: Request,
        c: ConsoleDep,
        username: Annotated[str, Form(max_length=200)],
        password: Annotated[str, Form(max_length=1000)],
        csrf: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/incidents",
    ) -> Response:
        username = username.strip().lower()
        address = _client(request) or "?"
        keys = (f"user:{username}", f"addr:{address}")
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        w = words(language(request, c))

        def again(message: str, status_code: int, **headers: str) -> HTMLResponse:
            response = render(
                request,
                c,
                "login.html",
                None,
                status_code=status_code,
                next=_safe_next(next),
                login_csrf=cookie or auth.new_csrf_token(),
                error=message,
                username=username,
            )
            response.headers.update(headers)
            return response

        if not cookie or not auth.same(cookie, csrf):
            return again(w["login_failed"], 403)
        wait = c.limiter.retry_after(*keys)
        if wait > 0:
            c.store.audit(username, "login:limited", None, address)
            return again(
                w["login_limited"].format(s=int(wait) + 1),
                429,
                **{"Retry-After": str(int(wait) + 1)},
            )
        record = c.store.login_record(username)
        ok = auth.password_matches(record["password_hash"] if record else None, password)
        if not ok or record is None or record["disabled"]:
            c.limiter.failed(*keys)
            c.store.audit(username, "login:failed", None, address)
            return again(w["login_failed"], 401)
        c.limiter.succeeded(username)
        secret = auth.new_session_secret()
        c.store.create_session(
            username,
            auth.digest(secret),
            auth.new_csrf_token(),
            c.session_lifetime,
            address,
            request.headers.get("user-agent"),
        )
        c.store.audit(username, "login", None, address)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            secret,
            httponly=True,
            samesite="lax",
            secure=c.settings.console.cookies_secure,
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(
        request: Request,
        c: ConsoleDep,
        who: PageUser,
        csrf: Annotated[str, Form(max_length=200)] = "",
    ) -> RedirectResponse:
        check_csrf(request, who, csrf)
        if who.session_hash:
            c.store.end_session(who.session_hash)
        c.store.audit(who.user.username, "logout", None, _client(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/incidents", include_in_schema=False, response_class=HTMLResponse)
    def incidents_page(
        request: Request,
        c: ConsoleDep,
        who: PageUser,
        state: Annotated[list[str] | None, Query()] = None,
        type_: Annotated[list[str] | None, Query(alias="type")] = None,
        desa: Annotated[list[str] | None, Query()] = None,
        kecamatan: Annotated[list[str] | None, Query()] = None,
        source: Annotated[list[str] | None, Query()] = None,
        since: Annotated[str | None, Query()] = None,
        until: Annotated[str | None, Query()] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> HTMLResponse:
        f = alarm_filter(
            state,
            type_,
            desa,
            kecamatan,
            source,
            _date(since, c.tz),
            _date(until, c.tz, end=True),
            50,
            offset,
        )
        rows = c.store.alarms(who.user, f)
        more = len(rows) > f.limit
        query = {
            k: v for k, v in request.query_params.multi_items() if k not in ("offset", "lang") and v
        }
        return render(
            request,
            c,
            "incidents.html",
            who,
            rows=rows[: f.limit],
            f=f,
            filters={
                "state": (f.state or ("",))[0],
                "type": (f.alarm_type or ("",))[0],
                "desa": (f.desa or ("",))[0],
                "kecamatan": (f.kecamatan or ("",))[0],
                "source": (f.source or ("",))[0],
                "since": since or "",
                "until": until or "",
            },
            states=("OPEN", "ACK", "DISPATCHED", "RESOLVED", "FALSE_POSITIVE", "CLEARED"),
            next_url=f"/incidents?{urlencode([*query.items(), ('offset', f.offset + f.limit)])}"
            if more
            else None,
        )

    @app.get("/incidents/{alarm_id}", include_in_schema=False, response_class=HTMLResponse)
    def incident_page(
        alarm_id: UUID, request: Request, c: ConsoleDep, who: PageUser
    ) -> HTMLResponse:
        row = c.store.alarm(alarm_id)
        if row is None or not roles.can_see(who.user, _scope(row)):
            return render(request, c, "missing.html", who, status_code=404)
        d = detail(c, who, row)
        chart = ""
        if row["source_kind"] == "sensor" and row["quantity"]:
            start = row["opened_at"] - timedelta(hours=6)
            end = max(row["updated_at"], row["opened_at"]) + timedelta(hours=1)
            points = [
                (r["time"], r["value"])
                for r in c.store.readings(row["source_id"], row["quantity"], start, end)
            ]
            chart = svg_chart(
                points,
                tz=c.tz,
                threshold=row["threshold"],
                marker=row["opened_at"],
                unit=row["quantity"],
            )
        return render(
            request,
            c,
            "incident.html",
            who,
            a=row,
            d=d,
            chart=chart,
            actions=allowed_actions(who.user, row),
            all_actions=roles.ACTIONS,
            can_act=roles.can_act(who.user, _scope(row)),
            reasons=FP_REASONS,
            tiles=c.settings.console.map_tiles_url,
        )

    @app.get("/me/telegram", include_in_schema=False, response_class=HTMLResponse)
    def telegram_page(request: Request, c: ConsoleDep, who: PageUser) -> HTMLResponse:
        return render(request, c, "telegram.html", who, code=None)

    @app.post("/me/telegram", include_in_schema=False, response_class=HTMLResponse)
    def telegram_code(
        request: Request,
        c: ConsoleDep,
        who: PageUser,
        csrf: Annotated[str, Form(max_length=200)] = "",
    ) -> HTMLResponse:
        check_csrf(request, who, csrf)
        ttl = c.settings.notify.telegram.link_code_ttl_s
        code = c.store.link_code(who.user.username, ttl)
        c.store.audit(who.user.username, "telegram:code", who.user.username, _client(request))
        return render(request, c, "telegram.html", who, code=code, hours=f"{ttl / 3600:g}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 303 and exc.headers:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        tiles = settings.console.map_tiles_url
        img = "'self' data:" + (f" {_origin(tiles)}" if tiles else "")
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; img-src {img}; media-src 'self'; script-src 'self'; "
            "style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("{", "").replace("}", ""))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _safe_next(target: str) -> str:
    """Only a path on this site: a login link must not send people elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/incidents"
    return target


def _date(value: str | None, tz: ZoneInfo, *, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD, the site's day) or a full timestamp from a filter form."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
        if end and len(value) <= 10:
            parsed += timedelta(days=1)
    return parsed.astimezone(UTC)


async def _heartbeat(c: Console, on_fatal: Callable[[str], None] | None) -> None:
    """Tell the supervisor the console is alive while its event loop turns and its live feed
    runs; a feed that died ends the process (the supervisor starts it again)."""
    while True:
        await asyncio.sleep(1.0)
        if c.feed is not None and not c.feed.alive:
            reason = "the live feed stopped (Kafka?)"
            log.error("console: %s", reason)
            if on_fatal is not None:
                on_fatal(reason)
            return
        alive()
