"""The incident console in a real browser (Debian's Chromium, driven by Playwright): log in,
a dumping alarm appears without a reload, its clip plays, acknowledge, dispatch, resolve,
and the history shows all three with the user; a phone-sized screen works too.

Screenshots of the list and the incident page are kept in test-artifacts/console/."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import REPO
from tests.integration.console_site import PASSWORD, Site

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "test-artifacts" / "console"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium: `apt-get install chromium` (scripts/test installs it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        # As root in a container Chromium's sandbox cannot start; the page is our own.
        b = p.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield b
        finally:
            b.close()


def log_in(page: Page, site: Site, username: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/incidents")


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def act(page: Page, action: str, **fields: str) -> None:
    page.click(f"button.act[data-action={action}]")
    for name, value in fields.items():
        page.fill(f"#action-form [name={name}]", value)
    page.click("#action-form button[type=submit]")
    # Once recorded, the page reloads and shows the state as stored: the caller checks it.


def test_a_new_dumping_alarm_appears_live_its_clip_plays_and_it_is_walked_to_resolved(
    browser: Browser, site: Site
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="id-ID")
    page = context.new_page()
    log_in(page, site, "operator1")
    expect(page.locator("#live")).not_to_have_class("live off", timeout=15_000)

    alarm_id = site.raise_dumping_alarm()
    row = page.locator(f"tr[data-alarm='{alarm_id}']")
    # Without a reload: the row arrives over the live feed.
    expect(row).to_be_visible(timeout=15_000)
    expect(row.locator(".state")).to_have_text("Baru")
    shot(page, "incidents.png")

    row.locator("a").click()
    page.wait_for_url(f"{site.url}/incidents/{alarm_id}")
    # The stills load (served through the console, digest checked) and the clip plays.
    expect(page.locator("#alert-still")).to_have_js_property("complete", True)
    assert page.evaluate("document.getElementById('alert-still').naturalWidth") == 640
    expect(page.locator("figure.boxed .box")).to_be_visible()
    page.evaluate("document.getElementById('clip').play()")
    # Polled from here: the page's policy forbids evaluating strings (no 'unsafe-eval').
    deadline = time.monotonic() + 15
    while page.evaluate("document.getElementById('clip').currentTime") <= 0.5:
        assert time.monotonic() < deadline, "the clip does not play"
        page.wait_for_timeout(200)
    assert page.evaluate("document.getElementById('clip').duration") > 5

    act(page, "ack", note="terlihat di layar")
    expect(page.locator("#state")).to_have_text("Diterima", timeout=15_000)
    act(page, "dispatch", to="Regu Kebersihan Sooko")
    expect(page.locator("#state")).to_have_text("Petugas dikirim", timeout=15_000)
    act(page, "resolve", note="sampah sudah diangkut")
    expect(page.locator("#state")).to_have_text("Selesai", timeout=15_000)

    history = page.locator("#history tbody tr")
    texts = [history.nth(i).inner_text() for i in range(history.count())]
    people = [t for t in texts if "operator1" in t]
    assert len(people) == 3, texts
    assert "diterima" in people[0] and "terlihat di layar" in people[0]
    assert "petugas dikirim" in people[1] and "Regu Kebersihan Sooko" in people[1]
    assert "selesai" in people[2] and "sampah sudah diangkut" in people[2]
    # Nothing left to do but comment on a resolved alarm.
    expect(page.locator("button.act[data-action=ack]")).to_be_hidden()
    expect(page.locator("button.act[data-action=comment]")).to_be_visible()
    shot(page, "incident.png")

    # English on request.
    page.goto(f"{site.url}/incidents/{alarm_id}?lang=en")
    expect(page.locator("#state")).to_have_text("Resolved")
    context.close()


def test_a_refused_action_is_shown_with_its_reason(browser: Browser, site: Site) -> None:
    alarm_id = site.raise_dumping_alarm()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, site, "operator1")
    page.goto(f"{site.url}/incidents/{alarm_id}")
    # Someone else resolves it first, from the API, while this page still offers "ack".
    op = site.login("operator1")
    sent = op.post(f"/api/v1/alarms/{alarm_id}/resolve", data={"note": "dari kantor"}).json()
    assert site.outcome(op, sent["action_id"])["status"] == "applied"
    page.click("button.act[data-action=ack]")
    page.click("#action-form button[type=submit]")
    expect(page.locator("#action-status")).to_contain_text("Ditolak", timeout=30_000)
    expect(page.locator("#action-status")).to_contain_text("is RESOLVED")
    context.close()


def test_on_a_phone_the_list_and_the_incident_fit_the_screen(browser: Browser, site: Site) -> None:
    alarm_id = site.raise_dumping_alarm()
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent="Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    )
    page = context.new_page()
    log_in(page, site, "field-sooko")
    fits = "document.documentElement.scrollWidth <= window.innerWidth + 1"
    assert page.evaluate(fits)
    expect(page.locator(f"tr[data-alarm='{alarm_id}']")).to_be_visible()
    shot(page, "incidents-phone.png")
    page.goto(f"{site.url}/incidents/{alarm_id}")
    assert page.evaluate(fits)
    expect(page.locator("button.act[data-action=ack]")).to_be_visible()
    act(page, "ack", note="otw")
    expect(page.locator("#state")).to_have_text("Diterima", timeout=15_000)
    # The device column is left out on a phone screen, not from the page.
    assert "console (phone)" in (page.locator("#history").text_content() or "")
    shot(page, "incident-phone.png")
    context.close()


def test_the_telegram_message_with_its_buttons_as_a_phone_shows_it(browser: Browser) -> None:
    """The notifier's own rendering (template, caption limit, buttons) drawn the way
    Telegram lays a photo message out; the picture in the README comes from here."""
    import base64
    import html as html_lib
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from pantau.messages import Alert, Place
    from streams.buttons import keyboard
    from streams.channels import TELEGRAM_CAPTION_LIMIT, fit_html
    from streams.templates import render
    from tests.integration.console_site import still_bytes

    now = datetime(2026, 12, 7, 11, 15, tzinfo=UTC)
    alert = Alert(
        id=uuid.UUID(int=1),
        ts_capture=now,
        seq=0,
        alarm_id=uuid.UUID("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        version=0,
        source_kind="dumping",
        source_id="tps-sooko",
        alarm_type="dumping",
        severity="major",
        state="OPEN",
        count=1,
        last_value=0.81,
        message="dumping at Jl. Raya Sooko (zone tepi-jalan)",
        place=Place(
            name="Jl. Raya Sooko", desa="Sooko", kecamatan="Sooko", lat=-7.4920, lon=112.4290
        ),
        opened_at=now,
        updated_at=now,
    )
    rendered = render(
        alert,
        language="id",
        tz=ZoneInfo("Asia/Jakarta"),
        incident_url="https://pantau.mojokertokab.go.id/incidents/{alarm_id}",
    )
    markup = keyboard(alert)
    assert markup is not None
    photo = base64.b64encode(still_bytes(380, "")).decode()
    rows = "".join(
        '<div class="row">'
        + "".join(f'<div class="btn">{html_lib.escape(b["text"])}</div>' for b in row)
        + "</div>"
        for row in markup["inline_keyboard"]
    )
    caption = fit_html(rendered.html, TELEGRAM_CAPTION_LIMIT).replace("\n", "<br>")
    page_html = f"""<!doctype html><meta charset="utf-8"><style>
      body {{ margin: 0; background: #0e1621; font: 15px/1.35 system-ui, sans-serif; }}
      .chat {{ padding: 14px 10px; }}
      .bubble {{ background: #182533; color: #f5f5f5; border-radius: 12px; overflow: hidden;
                max-width: 370px; }}
      .bubble img {{ width: 100%; display: block; }}
      .caption {{ padding: 8px 10px 10px; }} a {{ color: #6ab3f3; }}
      .row {{ display: flex; gap: 4px; margin-top: 4px; max-width: 370px; }}
      .btn {{ flex: 1; text-align: center; background: #2b5278; color: #fff; padding: 9px 4px;
             border-radius: 8px; font-size: 14px; }}
    </style><div class="chat"><div class="bubble"><img src="data:image/jpeg;base64,{photo}">
    <div class="caption">{caption}</div></div>{rows}</div>"""
    context = browser.new_context(viewport={"width": 390, "height": 700}, device_scale_factor=2)
    page = context.new_page()
    page.set_content(page_html)
    for label in ("Terima", "Berangkat", "Selesai", "Alarm keliru"):
        expect(page.get_by_text(label)).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".chat").screenshot(path=str(ARTIFACTS / "telegram-message.png"))
    context.close()
