"""Grafana-managed alert rules for slow, aggregate conditions, with their contact point.

Critical alarms (a river rising, a dumping event, a camera gone dark) come from the stream
processors within seconds and reach DLH staff through the notifier. What is left for Grafana
is what only shows over minutes across many sources: a fleet of sensors going quiet, many
cameras offline, refused input piling up, the sink falling behind, incidents left unresolved.
They go to the command center's operators, not to field staff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am

from dashboards.common import DATASOURCE_UID, FOLDER_TITLE, OPEN_STATES, Sql

GROUP = "pantau-operasional"
CONTACT_POINT = "Operator pusat komando"
INTERVAL = "1m"
TEAM_LABEL = {"team": "pusat-komando"}


@dataclass(frozen=True)
class Condition:
    uid: str
    title: str
    sql: str
    op: Literal["gt", "lt"]
    level: float
    window_s: int
    pending: str
    summary: str


CONDITIONS = (
    Condition(
        uid="pantau-sensors-silent",
        title="Banyak sensor tidak melapor",
        sql="""
            SELECT count(DISTINCT r.sensor_id)::float8 / nullif((SELECT count(*) FROM sensors
                                                                  WHERE active), 0) AS reporting
            FROM sensor_readings r
            JOIN sensors s USING (sensor_id)
            WHERE s.active AND $__timeFilter(r.time)
        """,
        op="lt",
        level=0.8,
        window_s=900,
        pending="15m",
        summary="Fewer than 80% of the sensors sent a reading in the last 15 minutes.",
    ),
    Condition(
        uid="pantau-cameras-offline",
        title="Banyak kamera offline",
        sql="""
            SELECT count(*) FILTER (WHERE h.status = 'online')::float8 / nullif(count(*), 0)
                       AS online
            FROM cameras c
            LEFT JOIN LATERAL (SELECT status FROM camera_health
                               WHERE camera_id = c.camera_id AND $__timeFilter(time)
                               ORDER BY time DESC LIMIT 1) h ON true
            WHERE c.active AND c.enabled
        """,
        op="lt",
        level=0.8,
        window_s=120,
        pending="10m",
        summary="Fewer than 80% of the enabled cameras have been online for 10 minutes.",
    ),
    Condition(
        uid="pantau-dead-letters",
        title="Banyak data ditolak",
        sql="""
            SELECT count(*)::float8 AS refused
            FROM dead_letters
            WHERE $__timeFilter(time)
        """,
        op="gt",
        level=100,
        window_s=3600,
        pending="5m",
        summary="More than 100 inputs were refused in the last hour: a sensor or camera "
        "sends something wrong; see the pipeline dashboard.",
    ),
    Condition(
        uid="pantau-sink-lag",
        title="Penyimpanan tertinggal",
        sql="""
            SELECT coalesce(max(value), 0) AS lag
            FROM pipeline_metrics
            WHERE component = 'sink' AND metric = 'consumer_lag' AND $__timeFilter(time)
        """,
        op="gt",
        level=100_000,
        window_s=600,
        pending="10m",
        summary="The sink has been more than 100,000 records behind Kafka for 10 minutes.",
    ),
    Condition(
        uid="pantau-stage-down",
        title="Tahap pipeline tidak berjalan",
        sql="""
            SELECT count(*) FILTER (WHERE value = 0)::float8 AS down
            FROM (SELECT DISTINCT ON (component, labels ->> 'worker') value
                  FROM pipeline_metrics
                  WHERE metric = 'up' AND $__timeFilter(time)
                  ORDER BY component, labels ->> 'worker', time DESC) latest
        """,
        op="gt",
        level=0,
        window_s=300,
        pending="2m",
        summary="A pipeline stage has been restarting, stalled or stopped for two minutes; "
        "the pipeline dashboard's stages table says which and why.",
    ),
    Condition(
        uid="pantau-incidents-unresolved",
        title="Insiden pembuangan belum ditangani",
        sql=f"""
            SELECT count(*)::float8 AS unresolved
            FROM alerts
            WHERE source_kind = 'dumping' AND state IN {OPEN_STATES}
              AND opened_at < $__timeTo()::timestamptz - interval '24 hours'
        """,
        op="gt",
        level=0,
        window_s=600,
        pending="1h",
        summary="A dumping incident has been open for more than a day.",
    ),
)


def rule(condition: Condition) -> ab.Rule:
    threshold = (
        expr.TypeThreshold()
        .expression("A")
        .ref_id("B")
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator()
                    .type(condition.op)
                    .params([condition.level])
                )
            ]
        )
    )
    return (
        ab.Rule(condition.title)
        .uid(condition.uid)
        .condition("B")
        .for_val(condition.pending)
        .no_data_state("OK")
        .exec_err_state("Error")
        .labels(TEAM_LABEL)
        .annotations({"summary": condition.summary})
        .with_query(
            ab.Query("A")
            .datasource_uid(DATASOURCE_UID)
            .relative_time_range(am.RelativeTimeRange(from_val=condition.window_s, to=0))
            .model(Sql(condition.sql))
        )
        .with_query(ab.Query("B").datasource_uid("__expr__").model(threshold))
    )


def provisioning() -> dict[str, Any]:
    """The alerting provisioning file: the rule group, the contact point and its policy.

    Grafana expands `$VAR` in provisioning files from its environment, so the webhook URL and
    the e-mail address stay out of the repository.
    """
    rules = []
    for condition in CONDITIONS:
        built = _plain(rule(condition).build())
        for key in ("folderUID", "orgID", "ruleGroup"):
            built.pop(key, None)
        built["isPaused"] = False
        # Grafana expands $NAME in provisioning files from its environment; `$$` keeps the
        # SQL's own macros ($__timeFilter) for the datasource.
        for query in built["data"]:
            if "rawSql" in query["model"]:
                query["model"]["rawSql"] = query["model"]["rawSql"].replace("$", "$$")
        rules.append(built)
    contact = ab.ContactPoint().name(CONTACT_POINT).uid("pantau-operators").type("webhook")
    contact = contact.settings({"url": "$PANTAU_GRAFANA_ALERT_WEBHOOK", "httpMethod": "POST"})
    email = ab.ContactPoint().name(CONTACT_POINT).uid("pantau-operators-email").type("email")
    email = email.settings({"addresses": "$PANTAU_GRAFANA_ALERT_EMAIL", "singleEmail": True})
    receivers = []
    for point in (contact, email):
        built_point = _plain(point.build())
        built_point.pop("name", None)
        receivers.append(built_point)
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER_TITLE,
                "interval": INTERVAL,
                "rules": rules,
            }
        ],
        "contactPoints": [{"orgId": 1, "name": CONTACT_POINT, "receivers": receivers}],
        "policies": [
            {
                "orgId": 1,
                "receiver": CONTACT_POINT,
                "group_by": ["grafana_folder", "alertname"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            }
        ],
    }


def _plain(model: object) -> dict[str, Any]:
    """An SDK model as plain JSON data (its to_json() leaves nested models as objects)."""
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return data
