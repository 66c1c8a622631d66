"""The field loop on the real services: a DLH worker presses Terima under an alarm's Telegram
message; how long until the alarm's new state is stored, and until the message shows it.

Run with the services up: `python bench/field_loop.py [--presses 30]`. A local server answers
like the Telegram Bot API (the tests' own); the stream processor, the sink, the notifier and
`pantau telegram` run as in a deployment, on a database and topics of their own.

Figures: button_to_state_p50_s, button_to_state_p95_s (press → the ACK version in
alarm_history), button_to_edit_p50_s, button_to_edit_p95_s (press → the message edited to
"Status: Diterima"). The press is timed from the moment the update is offered to the bot's
long poll, so the poll's own wait is part of the figure.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pantau.settings import load_settings  # noqa: E402
from tests.integration import conftest  # noqa: E402
from tests.integration.console_site import PASSWORD, Site, free_port  # noqa: E402
from tests.integration.fake_telegram import TOKEN, fake_telegram  # noqa: E402

CHAT = -1001
WORKER = 501


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=30)
    args = parser.parse_args()

    base = conftest.load_settings(conftest.BASE_CONFIG, conftest.base_environ())
    work = Path(tempfile.mkdtemp(prefix="pantau-field-loop-"))
    tag = f"bench{uuid.uuid4().hex[:6]}"
    evidence = work / "evidence"
    evidence.mkdir()
    to_state: list[float] = []
    to_edit: list[float] = []
    with fake_telegram() as fake, conftest.fresh_database(base, "pantau_field") as database:
        port = free_port()
        env = {
            **conftest.base_environ(),
            "PANTAU__KAFKA__TOPIC_PREFIX": f"{tag}.",
            "PANTAU__POSTGRES__DBNAME": database,
            "PANTAU__SINK__GROUP_ID": f"{tag}-sink",
            "PANTAU__SINK__WORKERS": "1",
            "PANTAU__STREAMS__APP_ID": f"{tag}-streams",
            "PANTAU__STREAMS__DATA_DIR": str(work / "streams"),
            "PANTAU__NOTIFY__GROUP_ID": f"{tag}-notify",
            "PANTAU__DUMPING__EVIDENCE__DIR": str(evidence),
            "PANTAU__CONSOLE__PORT": str(port),
            "PANTAU__RUNTIME__STATUS_DIR": str(work / "health"),
            "PANTAU_TELEGRAM_API": fake.url,
            "PANTAU__NOTIFY__TELEGRAM__TOKEN": TOKEN,
            "PANTAU_TELEGRAM_CHAT_CC": str(CHAT),
        }
        settings = load_settings(conftest.BASE_CONFIG, env)
        logs = work / "logs"
        logs.mkdir()
        line = conftest.Pipeline(settings=settings, env=env, tag=tag, logs=logs)
        site = Site(line, f"http://127.0.0.1:{port}", evidence, settings)
        try:
            import subprocess

            subprocess.run(
                line.command(
                    "users", "add", "petugas", "--role", "dlh_field", "--kecamatan", "Sooko",
                    "--password-stdin",
                ),
                input=PASSWORD + "\n", env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            code = re.search(r"/start (\w+)", line.run("users", "link", "petugas"))
            assert code is not None
            for stage in ("streams", "sink", "notify", "telegram"):
                line.start(stage, stage)
            fake.send_text(WORKER, WORKER, f"/start {code.group(1)}")
            line.wait_for(
                "the worker's account linked",
                lambda: bool(line.scalar("SELECT count(*) FROM telegram_links")),
                timeout=120,
            )
            for _ in tqdm(range(args.presses), desc="presses", unit="press"):
                alarm_id = site.raise_dumping_alarm()
                fake.wait_for(
                    "the alarm's message",
                    lambda a=alarm_id: any(
                        f"a:{a}" in m.buttons() for m in fake.chat_messages(CHAT)
                    ),
                    timeout=60,
                )
                [message] = [m for m in fake.chat_messages(CHAT) if f"a:{alarm_id}" in m.buttons()]
                start = time.perf_counter()
                fake.press(WORKER, message, f"a:{alarm_id}")
                stored = edited = None
                while stored is None or edited is None:
                    now = time.perf_counter()
                    if now - start > 30:
                        raise SystemExit(f"alarm {alarm_id}: no state or edit in 30 s; see {logs}")
                    if stored is None and line.scalar(
                        "SELECT count(*) FROM alarm_history WHERE alarm_id = %s "
                        "AND change = 'acknowledged'",
                        alarm_id,
                    ):
                        stored = now - start
                    if edited is None and "Status: Diterima" in message.text:
                        edited = now - start
                    time.sleep(0.01)
                to_state.append(stored)
                to_edit.append(edited)
        finally:
            line.stop_all()
            conftest.drop_topics(settings, tag)
    print(f"figure: button_to_state_p50_s = {statistics.median(to_state):.3f} s")
    print(f"figure: button_to_state_p95_s = {quantile(to_state, 0.95):.3f} s")
    print(f"figure: button_to_edit_p50_s = {statistics.median(to_edit):.3f} s")
    print(f"figure: button_to_edit_p95_s = {quantile(to_edit, 0.95):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
