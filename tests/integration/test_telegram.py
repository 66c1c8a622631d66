"""DLH field staff on Telegram, on the real services: the notifier's message carries buttons;
a press goes through alerts.actions.v1 and the stream processor, and every message of the
alarm is edited to its new state; unlinked accounts are refused; Selesai takes a photo and a
place; a restart of the bot in the middle of presses loses and repeats none."""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.integration.console_site import Site, free_port
from tests.integration.fake_telegram import TOKEN, FakeTelegram, Sent, fake_telegram

pytestmark = pytest.mark.integration

CHAT = -1001  # the command center's group (configs/pantau.yaml, PANTAU_TELEGRAM_CHAT_CC)
FIELD_USER = 501  # linked to field-sooko
STRANGER = 999


@dataclass
class Bot:
    site: Site
    fake: FakeTelegram
    env: dict[str, str]

    def start(self) -> Any:
        return self.site.pipeline.start("telegram", "telegram", env=self.env)

    def message_of(self, alarm_id: uuid.UUID, timeout: float = 60) -> Sent:
        found: list[Sent] = []

        def sent() -> bool:
            found[:] = [
                m
                for m in self.fake.chat_messages(CHAT)
                if any(str(alarm_id) in b for b in m.buttons())
            ]
            return bool(found)

        self.fake.wait_for(f"the alarm message of {alarm_id}", sent, timeout)
        return found[0]

    def stored_versions(self, alarm_id: uuid.UUID, username: str, expected: list[str]) -> None:
        """Wait until the sink has stored what the stream processor decided."""
        self.site.pipeline.wait_for(
            f"{alarm_id}: {expected} by {username}",
            lambda: self.versions_by(alarm_id, username) == expected,
            timeout=60,
        )

    def versions_by(self, alarm_id: uuid.UUID, username: str) -> list[str]:
        with self.site.pipeline.db() as conn:
            rows = conn.execute(
                "SELECT change FROM alarm_history WHERE alarm_id = %s AND by = %s ORDER BY version",
                (alarm_id, username),
            ).fetchall()
        return [r[0] for r in rows]


@pytest.fixture(scope="module")
def bot(site: Site) -> Iterator[Bot]:
    with fake_telegram() as fake:
        env = {
            "PANTAU_TELEGRAM_API": fake.url,
            "PANTAU__NOTIFY__TELEGRAM__TOKEN": TOKEN,
            "PANTAU__NOTIFY__TELEGRAM__POLL_TIMEOUT_S": "1",
            "PANTAU_TELEGRAM_CHAT_CC": str(CHAT),
            "PANTAU__NOTIFY__GROUP_ID": f"{site.pipeline.tag}-notify",
        }
        site.pipeline.start("notify", "notify", env=env)
        b = Bot(site, fake, env)
        out = site.pipeline.run("users", "link", "field-sooko")
        code = re.search(r"/start (\w+)", out)
        assert code, out
        b.start()
        fake.send_text(FIELD_USER, FIELD_USER, f"/start {code.group(1)}")

        def linked() -> bool:
            return bool(
                site.pipeline.scalar(
                    "SELECT count(*) FROM telegram_links WHERE telegram_user_id = %s", FIELD_USER
                )
            )

        site.pipeline.wait_for("the Telegram account linked", linked, timeout=60)
        yield b


def test_a_press_moves_the_alarm_and_every_message_shows_who_did_it(bot: Bot) -> None:
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    assert message.buttons() == [f"{c}:{alarm_id}" for c in ("a", "d", "r", "f")]

    query = bot.fake.press(FIELD_USER, message, f"a:{alarm_id}")
    answer = bot.fake.answer(query)
    assert answer["text"] == "Tercatat: Diterima."
    bot.stored_versions(alarm_id, "field-sooko", ["acknowledged"])

    def edited() -> bool:
        return "Status: Diterima" in message.text and "field-sooko" in message.text

    bot.fake.wait_for("the message edited", edited)
    assert f"a:{alarm_id}" not in message.buttons() and f"r:{alarm_id}" in message.buttons()

    # The same button again: refused, with the reason, and nothing changes.
    again = bot.fake.answer(bot.fake.press(FIELD_USER, message, f"a:{alarm_id}"))
    assert again["text"].startswith("Ditolak:") and "is ACK" in again["text"]
    assert bot.versions_by(alarm_id, "field-sooko") == ["acknowledged"]


def test_an_account_linked_to_nobody_is_refused_and_logged(bot: Bot) -> None:
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    answer = bot.fake.answer(bot.fake.press(STRANGER, message, f"a:{alarm_id}"))
    assert answer.get("show_alert") is True and "belum terhubung" in answer["text"]
    refused = bot.site.pipeline.scalar(
        "SELECT count(*) FROM console_audit WHERE event = 'telegram:refused' "
        "AND detail->>'telegram_user' = %s",
        str(STRANGER),
    )
    assert refused >= 1
    state = bot.site.pipeline.scalar("SELECT state FROM alerts WHERE alarm_id = %s", alarm_id)
    assert state == "OPEN"


def test_selesai_takes_a_photo_and_a_place_that_the_console_shows(bot: Bot) -> None:
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    answer = bot.fake.answer(bot.fake.press(FIELD_USER, message, f"r:{alarm_id}"))
    assert "foto" in answer["text"]
    bot.fake.send_location(FIELD_USER, CHAT, -7.49201, 112.42903)
    image = np.full((600, 800, 3), (60, 140, 60), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    bot.fake.send_photo(FIELD_USER, CHAT, jpeg.tobytes())

    def resolved() -> bool:
        return bot.versions_by(alarm_id, "field-sooko") == ["resolved"]

    bot.site.pipeline.wait_for("the alarm resolved from Telegram", resolved, timeout=60)
    op = bot.site.login("operator1")
    detail = bot.site.stored_state(op, alarm_id, 1)
    last = detail["history"][-1]
    assert (last["change"], last["device"], last["by"]) == ("resolved", "telegram", "field-sooko")
    assert (round(last["lat"], 5), round(last["lon"], 5)) == (-7.49201, 112.42903)
    photo = op.get(last["photo_url"])
    assert photo.status_code == 200
    decoded = cv2.imdecode(np.frombuffer(photo.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (600, 800, 3)


def test_a_false_positive_asks_for_the_reason_first(bot: Bot) -> None:
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    bot.fake.answer(bot.fake.press(FIELD_USER, message, f"f:{alarm_id}"))
    prompt: list[Sent] = []

    def asked() -> bool:
        prompt[:] = [m for m in bot.fake.chat_messages(CHAT) if f"fr:cm:{alarm_id}" in m.buttons()]
        return bool(prompt)

    bot.fake.wait_for("the reasons offered", asked)
    answer = bot.fake.answer(bot.fake.press(FIELD_USER, prompt[0], f"fr:cm:{alarm_id}"))
    assert answer["text"] == "Tercatat: Alarm keliru."
    bot.stored_versions(alarm_id, "field-sooko", ["false_positive"])
    with bot.site.pipeline.db() as conn:
        row = conn.execute(
            "SELECT change, reason FROM alarm_history WHERE alarm_id = %s AND by = 'field-sooko'",
            (alarm_id,),
        ).fetchone()
    assert row == ("false_positive", "camera_moved")


def test_a_restart_in_the_middle_of_presses_loses_and_repeats_none(bot: Bot) -> None:
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    [entry] = [p for p in bot.site.pipeline.processes if p[0] == "telegram"][-1:]
    running = entry[1]
    # Terima, Berangkat, then Selesai without a photo: pressed one after another.
    queries = [bot.fake.press(FIELD_USER, message, f"{c}:{alarm_id}") for c in ("a", "d", "rn")]
    bot.fake.answer(queries[0])
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)
    # Killed on purpose: not a death the waits below should report.
    bot.site.pipeline.processes.remove(entry)
    bot.start()
    bot.stored_versions(alarm_id, "field-sooko", ["acknowledged", "dispatched", "resolved"])
    # Every press became exactly one action: none lost, none applied twice.
    actions = bot.site.pipeline.scalar(
        "SELECT count(DISTINCT action_id) FROM alarm_actions WHERE alarm_id = %s "
        "AND by = 'field-sooko'",
        alarm_id,
    )
    assert actions == 3


def test_the_camera_confirms_a_clean_up_or_reopens_the_alarm_when_the_object_stays(
    bot: Bot,
) -> None:
    confirmed = bot.site.raise_dumping_alarm()
    message = bot.message_of(confirmed)
    bot.fake.answer(bot.fake.press(FIELD_USER, message, f"rn:{confirmed}"))
    bot.stored_versions(confirmed, "field-sooko", ["resolved"])
    # The camera sees the spot empty: the clean-up is confirmed, quietly.
    bot.site.dumping_step(confirmed, "end", "cleaned")

    def changes(alarm_id: uuid.UUID) -> list[str]:
        with bot.site.pipeline.db() as conn:
            rows = conn.execute(
                "SELECT change FROM alarm_history WHERE alarm_id = %s ORDER BY version",
                (alarm_id,),
            ).fetchall()
        return [r[0] for r in rows]

    bot.site.pipeline.wait_for(
        "the clean-up confirmed",
        lambda: changes(confirmed)[-1:] == ["confirmed"],
        timeout=60,
    )
    state = bot.site.pipeline.scalar("SELECT state FROM alerts WHERE alarm_id = %s", confirmed)
    assert state == "RESOLVED"

    # Resolved, but the object is still there after streams.cleanup_confirm_s (600 s): the
    # alarm opens again, and its message offers the buttons again.
    stays = bot.site.raise_dumping_alarm()
    message = bot.message_of(stays)
    bot.fake.answer(bot.fake.press(FIELD_USER, message, f"rn:{stays}"))
    bot.stored_versions(stays, "field-sooko", ["resolved"])
    bot.site.dumping_step(stays, "update", "alerted", after_s=601)
    bot.site.pipeline.wait_for(
        "the alarm re-opened",
        lambda: changes(stays)[-1:] == ["reopened"],
        timeout=60,
    )
    assert bot.site.pipeline.scalar("SELECT state FROM alerts WHERE alarm_id = %s", stays) == (
        "OPEN"
    )
    bot.fake.wait_for("the buttons back", lambda: f"a:{stays}" in message.buttons())


def test_in_webhook_mode_only_telegram_is_heard_and_an_update_sent_again_counts_once(
    bot: Bot,
) -> None:
    # Last in this file: the webhook bot takes over the stored update offset.
    for entry in [p for p in bot.site.pipeline.processes if p[0] == "telegram"]:
        bot.site.pipeline.stop(entry[1])
        bot.site.pipeline.processes.remove(entry)
    port = free_port()
    secret = "webhook-secret-for-the-tests"
    bot.site.pipeline.start(
        "telegram-webhook",
        "telegram",
        env={
            **bot.env,
            "PANTAU__NOTIFY__TELEGRAM__UPDATES": "webhook",
            "PANTAU__NOTIFY__TELEGRAM__WEBHOOK_PORT": str(port),
            "PANTAU__NOTIFY__TELEGRAM__WEBHOOK_SECRET": secret,
        },
    )
    url = f"http://127.0.0.1:{port}/"

    def listening() -> bool:
        try:
            return httpx.post(url, json={}, timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    bot.site.pipeline.wait_for("the webhook to listen", listening, timeout=60)
    alarm_id = bot.site.raise_dumping_alarm()
    message = bot.message_of(alarm_id)
    update = {
        "update_id": 900_000,
        "callback_query": {
            "id": "webhook-press",
            "from": {"id": FIELD_USER, "is_bot": False, "first_name": "petugas"},
            "message": {"message_id": message.message_id, "chat": {"id": message.chat_id}},
            "data": f"a:{alarm_id}",
        },
    }
    assert httpx.post(url, json=update, timeout=30).status_code == 401
    wrong = {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"}
    assert httpx.post(url, json=update, headers=wrong, timeout=30).status_code == 401
    right = {"X-Telegram-Bot-Api-Secret-Token": secret}
    answers = bot.fake.calls.count("answerCallbackQuery")
    assert httpx.post(url, json=update, headers=right, timeout=30).status_code == 200
    assert bot.fake.answer("webhook-press")["text"] == "Tercatat: Diterima."
    # Telegram sends an update again when it did not hear the 200: it is handled once.
    assert httpx.post(url, json=update, headers=right, timeout=30).status_code == 200
    bot.stored_versions(alarm_id, "field-sooko", ["acknowledged"])
    assert bot.fake.calls.count("answerCallbackQuery") == answers + 1
