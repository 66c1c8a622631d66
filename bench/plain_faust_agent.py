"""A plain faust-streaming agent on the readings topic: each record decoded into a
`SensorReading` and counted, nothing else. bench/streams_alerts.py runs it on the same backlog
and core as `pantau streams`; their rates' ratio is `stream_vs_plain_faust`.

It uses faust the way its documentation does: an agent iterating a stream, one record at a
time, acknowledged as it goes, committed every second (as the stream processor is), at
least once.

    python bench/plain_faust_agent.py --config CONFIG --group GROUP

(the broker, its login and the topic come from CONFIG and PANTAU__ variables, as for pantau.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faust  # noqa: E402

from pantau import kafka  # noqa: E402
from pantau.codec import decode_as  # noqa: E402
from pantau.messages import SensorReading  # noqa: E402
from pantau.settings import load_settings  # noqa: E402
from pantau.topics import Topics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--group", required=True, help="the faust app id (consumer group)")
    args = parser.parse_args()
    settings = load_settings(args.config, dict(os.environ))
    topic_name = Topics(settings.kafka).readings
    servers = settings.kafka.bootstrap_servers.split(",")
    with tempfile.TemporaryDirectory(prefix="plain-faust-") as data:
        app = faust.App(
            args.group,
            broker=";".join(f"kafka://{s.strip()}" for s in servers),
            datadir=data,
            processing_guarantee="at_least_once",
            key_serializer="raw",
            value_serializer="raw",
            broker_commit_interval=1.0,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            topic_partitions=settings.kafka.partitions.readings,
            **kafka.security_options(settings.kafka, "faust"),
        )
        topic = app.topic(topic_name)
        counted = 0

        @app.agent(topic)
        async def count(stream: Any) -> AsyncIterator[None]:
            nonlocal counted
            async for value in stream:
                decode_as(value, SensorReading)
                counted += 1
                yield None

        worker = faust.Worker(app, loglevel="warning", quiet=True)
        sys.argv = sys.argv[:1]
        worker.execute_from_commandline()


if __name__ == "__main__":
    main()
