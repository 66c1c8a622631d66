"""The incident console's REST API on the real services: alarms raised by the stream
processor, actions through Kafka back into the stored state and history, roles, sessions,
CSRF, and evidence served only while it matches its SHA-256."""

from __future__ import annotations

import hashlib
import re
import time

import cv2
import numpy as np
import pytest

from pantau.credentials import link_code_digest
from tests.integration.console_site import (
    DUMPING_CAMERA,
    PASSWORD,
    WATER_SENSOR,
    Site,
)

pytestmark = pytest.mark.integration


def photo() -> bytes:
    image = np.full((600, 800, 3), (80, 160, 80), np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def test_an_operator_takes_a_dumping_alarm_from_open_to_resolved_and_the_history_says_who(
    site: Site,
) -> None:
    alarm_id = site.raise_dumping_alarm()
    op = site.login("operator1")

    listed = op.get("/api/v1/alarms", params={"type": "dumping", "state": "OPEN"}).json()
    [mine] = [a for a in listed["items"] if a["alarm_id"] == str(alarm_id)]
    assert mine["source_id"] == DUMPING_CAMERA and mine["kecamatan"] == "Sooko"
    assert mine["url"] == f"{site.url}/incidents/{alarm_id}"
    assert {"ack", "dispatch", "resolve", "false-positive"} <= set(mine["actions"])

    steps = [
        ("ack", {"note": "dilihat di layar"}, None),
        ("dispatch", {"to": "Regu Kebersihan Sooko"}, None),
        ("resolve", {"note": "sudah diangkut"}, photo()),
    ]
    for action, form, picture in steps:
        files = {"photo": ("bersih.jpg", picture, "image/jpeg")} if picture else None
        sent = op.post(f"/api/v1/alarms/{alarm_id}/{action}", data=form, files=files)
        assert sent.status_code == 202, sent.text
        outcome = site.outcome(op, sent.json()["action_id"])
        assert outcome["status"] == "applied", outcome

    detail = site.stored_state(op, alarm_id, outcome["version"])
    assert detail["alarm"]["state"] == "RESOLVED"
    assert detail["alarm"]["dispatched_to"] == "Regu Kebersihan Sooko"
    people = [h for h in detail["history"] if h["by"]]
    assert [(h["change"], h["state"], h["by"]) for h in people] == [
        ("acknowledged", "ACK", "operator1"),
        ("dispatched", "DISPATCHED", "operator1"),
        ("resolved", "RESOLVED", "operator1"),
    ]
    assert {h["device"] for h in people} == {"console (desktop)"}
    assert people[0]["note"] == "dilihat di layar" and people[2]["note"] == "sudah diangkut"
    assert detail["history"][0]["change"] == "opened" and detail["history"][0]["by"] == ""
    # The photo of the cleaned spot, as stored and served.
    picture = op.get(people[2]["photo_url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (600, 800, 3)
    # Stored by the sink, as analysts see it.
    rows = site.pipeline.scalar(
        "SELECT count(*) FROM alarm_history WHERE alarm_id = %s AND by = 'operator1'", alarm_id
    )
    assert rows == 3

    # Resolving it again is refused by the stream processor, and the reason comes back.
    again = op.post(f"/api/v1/alarms/{alarm_id}/resolve", data={"note": "lagi"})
    assert again.status_code == 202
    refused = site.outcome(op, again.json()["action_id"])
    assert refused["status"] == "refused"
    assert "is RESOLVED" in refused["reason"]

    def refusal_in_history() -> bool:
        history = op.get(f"/api/v1/alarms/{alarm_id}").json()["history"]
        return any(h["entry"] == "refused" and "is RESOLVED" in h["refused"] for h in history)

    site.pipeline.wait_for("the refusal in the history", refusal_in_history, timeout=30)


def test_comment_assign_and_false_positive_carry_what_people_wrote(site: Site) -> None:
    alarm_id = site.raise_water_alarm()
    op = site.login("operator1")
    for action, form in [
        ("assign", {"to": "field-sooko"}),
        ("comment", {"note": "air naik cepat"}),
        ("false-positive", {"reason": "camera_moved", "note": "sensor tergeser"}),
    ]:
        sent = op.post(f"/api/v1/alarms/{alarm_id}/{action}", data=form)
        assert sent.status_code == 202, sent.text
        outcome = site.outcome(op, sent.json()["action_id"])
        assert outcome["status"] == "applied"
    detail = site.stored_state(op, alarm_id, outcome["version"])
    assert detail["alarm"]["state"] == "FALSE_POSITIVE"
    assert detail["alarm"]["assignee"] == "field-sooko"
    last = detail["history"][-1]
    assert (last["change"], last["reason"], last["note"]) == (
        "false_positive",
        "camera_moved",
        "sensor tergeser",
    )
    # What an action needs, checked before anything is sent.
    for action, form, status in [
        ("assign", {}, 400),
        ("comment", {"note": "  "}, 400),
        ("false-positive", {"note": "x"}, 400),
        ("false-positive", {"reason": "bosan"}, 422),
        ("ack", {"reason": "other"}, 400),
    ]:
        assert op.post(f"/api/v1/alarms/{alarm_id}/{action}", data=form).status_code == status


def test_each_role_sees_and_acts_on_what_it_may(site: Site) -> None:
    dumping = site.raise_dumping_alarm()
    water = site.raise_water_alarm(3.8)
    sooko, gedeg, wall = (site.login(u) for u in ("field-sooko", "field-gedeg", "wall"))

    def listed(client: object, alarm_id: object) -> bool:
        items = client.get("/api/v1/alarms", params={"limit": 500}).json()["items"]  # type: ignore[attr-defined]
        return str(alarm_id) in {a["alarm_id"] for a in items}

    # Field staff of Sooko: the dumping alarm in Sooko, not the river in Mojoanyar.
    assert listed(sooko, dumping) and not listed(sooko, water)
    assert sooko.get(f"/api/v1/alarms/{water}").status_code == 404
    # Field staff of Gedeg: neither; they cannot act on it, nor learn that it exists.
    assert not listed(gedeg, dumping)
    assert gedeg.get(f"/api/v1/alarms/{dumping}").status_code == 404
    assert gedeg.post(f"/api/v1/alarms/{dumping}/ack").status_code == 404
    assert gedeg.get(f"/api/v1/alarms/{dumping}/evidence/alert").status_code == 404
    # The wall sees everything and does nothing.
    assert listed(wall, dumping) and listed(wall, water)
    refused = wall.post(f"/api/v1/alarms/{dumping}/ack")
    assert refused.status_code == 403
    assert wall.get(f"/api/v1/alarms/{dumping}").json()["alarm"]["actions"] == []
    # Field staff of Sooko act on their alarm.
    sent = sooko.post(f"/api/v1/alarms/{dumping}/ack", data={"note": "menuju lokasi"})
    assert sent.status_code == 202
    assert site.outcome(sooko, sent.json()["action_id"])["status"] == "applied"
    # Users and tokens are the admin's.
    assert wall.get("/api/v1/users").status_code == 403
    admin = site.login("admin1")
    assert {u["username"] for u in admin.get("/api/v1/users").json()} >= {"wall", "field-sooko"}


def test_sessions_need_their_csrf_token_end_at_logout_and_expire(site: Site) -> None:
    alarm_id = site.raise_water_alarm(3.7)
    op = site.login("operator1")
    token = op.headers.pop("X-CSRF-Token")
    # A form on another site can send the cookie, never the token.
    assert op.post(f"/api/v1/alarms/{alarm_id}/ack").status_code == 403
    op.headers["X-CSRF-Token"] = "not-the-token"
    assert op.post(f"/api/v1/alarms/{alarm_id}/ack").status_code == 403
    op.headers["X-CSRF-Token"] = token
    assert op.get("/api/v1/alarms").status_code == 200

    cookie = op.cookies["pantau_session"]
    assert "kali" not in cookie
    # Only a digest of the session is in the database.
    stored = site.pipeline.scalar(
        "SELECT count(*) FROM console_sessions WHERE session_hash = %s",
        hashlib.sha256(cookie.encode()).hexdigest(),
    )
    assert stored == 1
    assert op.post("/logout", data={"csrf": token}).status_code == 303
    assert op.get("/api/v1/alarms").status_code == 401
    assert op.get("/incidents").headers["location"].startswith("/login")

    other = site.login("operator1")
    site.pipeline.scalar(
        "UPDATE console_sessions SET expires_at = now() - interval '1 second' "
        "WHERE username = 'operator1' RETURNING 1"
    )
    assert other.get("/api/v1/alarms").status_code == 401
    # Nobody without a session or a token.
    anonymous = site.client()
    assert anonymous.get("/api/v1/alarms").status_code == 401
    assert anonymous.get(f"/api/v1/alarms/{alarm_id}/evidence/alert").status_code == 401
    assert anonymous.get("/incidents").status_code == 303


def test_logins_are_rate_limited_and_audited(site: Site) -> None:
    client = site.client()
    page = client.get("/login")
    csrf = client.cookies["pantau_login_csrf"]
    assert csrf in page.text
    codes = [
        client.post(
            "/login", data={"username": "wall", "password": "salah-sekali-123", "csrf": csrf}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    # Even the right password waits out the window.
    limited = client.post("/login", data={"username": "wall", "password": PASSWORD, "csrf": csrf})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    time.sleep(5.5)
    assert (
        client.post(
            "/login", data={"username": "wall", "password": PASSWORD, "csrf": csrf}
        ).status_code
        == 303
    )
    failed = site.pipeline.scalar(
        "SELECT count(*) FROM console_audit WHERE username = 'wall' AND event = 'login:failed'"
    )
    assert failed >= 3


def test_behind_a_trusted_proxy_each_client_address_has_its_own_login_count(
    site: Site,
) -> None:
    def attempt(address: str, username: str) -> int:
        client = site.client()
        client.headers["X-Forwarded-For"] = address
        client.get("/login")
        csrf = client.cookies["pantau_login_csrf"]
        return client.post(
            "/login", data={"username": username, "password": "salah-lagi-1234", "csrf": csrf}
        ).status_code

    assert [attempt("10.20.0.5", f"nobody{n}") for n in range(4)] == [401, 401, 401, 429]
    # Another field phone behind the same proxy is not locked out with it.
    assert attempt("10.20.0.6", "nobody9") == 401
    logged = site.pipeline.scalar(
        "SELECT count(*) FROM console_audit WHERE event = 'login:failed' AND address = '10.20.0.5'"
    )
    assert logged == 3


def test_evidence_is_served_while_it_matches_its_sha256_and_originals_only_to_operators(
    site: Site,
) -> None:
    alarm_id = site.raise_dumping_alarm()
    op, field = site.login("operator1"), site.login("field-sooko")
    detail = op.get(f"/api/v1/alarms/{alarm_id}").json()
    evidence = {e["kind"]: e for e in detail["evidence"]}
    assert set(evidence) == {"before", "alert", "owner", "clip"}
    assert "file://" not in str(detail)

    still = field.get(evidence["alert"]["url"])
    assert still.status_code == 200 and still.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(still.content).hexdigest() == evidence["alert"]["sha256"]
    # The clip: WebM, and a player may ask for any part of it.
    clip = op.get(evidence["clip"]["url"])
    assert clip.headers["content-type"] == "video/webm" and clip.content[:4] == b"\x1a\x45\xdf\xa3"
    part = op.get(evidence["clip"]["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(clip.content)}"
    assert part.content == clip.content[100:200]
    # Unblurred originals: operators yes, field staff no.
    assert op.get(evidence["alert"]["original_url"]).status_code == 200
    assert field.get(f"{evidence['alert']['url']}?original=true").status_code == 403
    # An API token works where a session does; a wrong one does not.
    bearer = site.client()
    bearer.headers["Authorization"] = f"Bearer {site.tokens['operator1']}"
    assert bearer.get(evidence["before"]["url"]).status_code == 200
    bearer.headers["Authorization"] = f"Bearer {site.tokens['operator1']}x"
    assert bearer.get(evidence["before"]["url"]).status_code == 401
    # A file changed after the fact is not served as evidence.
    tampered = next(
        p
        for p in site.evidence_dir.rglob("before.jpg")
        if hashlib.sha256(p.read_bytes()).hexdigest() == evidence["before"]["sha256"]
    )
    tampered.write_bytes(tampered.read_bytes() + b"\x00")
    assert op.get(evidence["before"]["url"]).status_code == 409
    opened = site.pipeline.scalar(
        "SELECT count(*) FROM console_audit WHERE event = 'evidence' AND target = %s",
        str(alarm_id),
    )
    assert opened >= 3


def test_the_openapi_document_describes_every_call(site: Site) -> None:
    doc = site.client().get("/api/v1/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/alarms",
        "/api/v1/alarms/{alarm_id}",
        "/api/v1/alarms/{alarm_id}/{action}",
        "/api/v1/actions/{action_id}",
        "/api/v1/alarms/{alarm_id}/evidence/{kind}",
        "/api/v1/events",
        "/api/v1/sources",
        "/api/v1/stream",
    } <= paths
    action = doc["paths"]["/api/v1/alarms/{alarm_id}/{action}"]["post"]
    assert "202" in action["responses"]


def test_sources_show_each_camera_and_sensor_with_its_latest_status(site: Site) -> None:
    site.raise_water_alarm(3.9)
    op = site.login("operator1")
    sources = {s["id"]: s for s in op.get("/api/v1/sources").json()}
    assert sources[WATER_SENSOR]["kind"] == "sensor"
    assert sources[WATER_SENSOR]["last_seen"] is not None
    assert sources[WATER_SENSOR]["open_alarms"] >= 1
    assert sources[DUMPING_CAMERA]["kind"] == "camera"
    field = site.login("field-gedeg")
    assert {s["kecamatan"] for s in field.get("/api/v1/sources").json()} == {"Gedeg"}


def test_the_telegram_page_gives_a_one_time_code_kept_only_as_a_digest(site: Site) -> None:
    field = site.login("field-sooko")
    # The page's form sends the token as a field, not a header.
    token = field.headers.pop("X-CSRF-Token")
    assert field.post("/me/telegram", data={"csrf": "wrong"}).status_code == 403
    page = field.post("/me/telegram", data={"csrf": token})
    code = re.search(r"/start ([A-Z0-9]{8})", page.text)
    assert page.status_code == 200 and code, page.text
    with site.pipeline.db() as conn:
        rows = conn.execute(
            "SELECT code_hash FROM telegram_link_codes WHERE username = 'field-sooko'"
        ).fetchall()
    assert code.group(1) not in {r[0] for r in rows}
    assert link_code_digest(code.group(1)) in {r[0] for r in rows}
