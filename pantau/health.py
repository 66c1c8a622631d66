"""`pantau health`: what the supervisors of the long-running commands say about their workers,
and the publisher of their `up` / `restarts` metrics."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pantau.commands import Context, SubParsers
from pantau.messages import Metric
from pantau.settings import Settings

log = logging.getLogger(__name__)

# States in which a worker is doing its job.
HEALTHY = frozenset({"running", "done"})


class MetricsPublisher:
    """Sends supervisor metrics to `pipeline.metrics.v1`, best effort: the producer is made
    on first use and again after a failure, and a broker that is down costs at most about a
    second per report."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: Any = None

    def __call__(self, messages: Sequence[Metric]) -> None:
        from pantau import kafka
        from pantau.topics import Topics

        topics = Topics(self._settings.kafka)
        topic = topics.metrics
        if self._producer is None:
            # A kafka-python client blocks for half a minute in its constructor when the
            # broker is away or refuses the login: ask quickly first, and skip this report.
            kafka.wait_until_ready(self._settings.kafka, timeout_s=1.0)
            # The supervisor reports before its workers have made the topics: make this one
            # (a producer waiting for a topic that does not exist logs an error a second).
            kafka.ensure_topics(
                self._settings.kafka, [spec for spec in topics.specs() if spec.name == topic]
            )
            self._producer = kafka.producer(
                self._settings.kafka, "supervisor", max_block_ms=1000, linger_ms=50
            )
        try:
            for message in messages:
                kafka.publish(self._producer, topic, message)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception as exc:
                log.debug("closing the metrics producer: %s", exc)
            self._producer = None


def _reason_text(state: str, reason: object) -> str:
    if not reason:
        return ""
    # A running worker's reason is why it was last restarted: history, not its state.
    return f"  last restart: {reason}" if state in HEALTHY else f"  {reason}"


def metrics_publisher(settings: Settings) -> MetricsPublisher:
    return MetricsPublisher(settings)


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "health", help="state of the supervised stages (running, restarting, stalled) and why"
    )
    parser.add_argument("component", nargs="*", help="only these (e.g. sink detect)")
    parser.set_defaults(handler=_health)


def _health(args: argparse.Namespace, ctx: Context) -> int:
    from pantau.supervisor import read_statuses

    runtime = ctx.settings.runtime
    documents = read_statuses(runtime.status_dir)
    if args.component:
        documents = [d for d in documents if d.get("component") in args.component]
        missing = set(args.component) - {str(d.get("component")) for d in documents}
        for name in sorted(missing):
            print(f"{name}: no status (never started under a supervisor here)", file=sys.stderr)
        if missing:
            return 1
    if not documents:
        print(f"no supervised stage has reported to {runtime.status_dir}", file=sys.stderr)
        return 1
    healthy = True
    now = datetime.now(UTC)
    for document in documents:
        updated = datetime.fromisoformat(str(document["updated_at"]))
        age_s = (now - updated).total_seconds()
        # A supervisor rewrites its file every status interval; three missed means it is gone.
        silent = age_s > 3 * runtime.status_interval_s
        workers = document.get("workers")
        for worker in workers if isinstance(workers, list) else []:
            state = "silent" if silent else str(worker.get("state"))
            healthy = healthy and state in HEALTHY
            progress = worker.get("last_progress_s")
            print(
                f"{document['component']:<16} {worker.get('name')!s:<18} {state:<11} "
                f"restarts {worker.get('restarts')!s:<3} "
                f"{'pid ' + str(worker['pid']) if worker.get('pid') else '':<11} "
                f"{'progress ' + str(progress) + ' s ago' if progress is not None else ''}"
                + (_reason_text(state, worker.get("reason")))
                + (f"  (status {age_s:.0f} s old)" if silent else "")
            )
    return 0 if healthy else 1
