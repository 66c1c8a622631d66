"""The generated dashboards and provisioning: deterministic, committed, and coherent —
every reference points at something that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import alerting
from dashboards.common import DATASOURCE_TYPE, DATASOURCE_UID
from dashboards.export import export, render_dashboards, render_files
from dashboards.queries import panel_queries, rule_queries
from pantau.settings import Settings, load_settings
from tests.conftest import REPO

COMMITTED = REPO / "dashboards" / "grafana"
# Grafana's grid: 24 columns; a row unit is 30 px plus an 8 px gap.
GRID_ROW_PX = 38


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "configs" / "pantau.yaml", {})


@pytest.fixture(scope="module")
def dashboards(settings: Settings) -> dict[str, dict[str, Any]]:
    return render_dashboards(settings)


def test_committed_export_is_what_the_code_renders(settings: Settings) -> None:
    """docker-compose mounts dashboards/grafana: it must not drift from the code.
    Regenerate with `pantau dashboards export --out dashboards/grafana`."""
    rendered = render_files(settings)
    committed = {
        str(path.relative_to(COMMITTED)): path.read_text(encoding="utf-8")
        for path in COMMITTED.rglob("*")
        if path.is_file()
    }
    assert sorted(committed) == sorted(rendered)
    for name, content in rendered.items():
        assert committed[name] == content, f"{name} differs from the code's rendering"


def test_rendering_is_deterministic(settings: Settings, tmp_path: Path) -> None:
    first = export(settings, tmp_path / "a")
    second = export(settings, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert len(first) == 7


def test_four_dashboards_each_with_uid_title_tags_and_time_range(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    assert sorted(dashboards) == ["dumping", "environment", "pipeline", "wall"]
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == 4
    for name, model in dashboards.items():
        assert re.fullmatch(r"[a-z0-9-]{8,40}", model["uid"]), name
        assert model["title"].startswith("Pantau"), name
        assert "pantau" in model["tags"], name
        assert model["time"]["from"].startswith("now-") and model["time"]["to"] == "now", name
        assert model["refresh"], name
        assert model["timezone"] == "Asia/Jakarta", name
        assert model["panels"], name


def test_every_panel_reads_the_provisioned_datasource(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    provisioned = yaml.safe_load(
        (COMMITTED / "provisioning" / "datasources" / "pantau.yaml").read_text()
    )["datasources"]
    assert [(d["uid"], d["type"]) for d in provisioned] == [(DATASOURCE_UID, DATASOURCE_TYPE)]
    for model in dashboards.values():
        for panel in model["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
                assert target["rawSql"].strip()
        for variable in model["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_queries_use_only_variables_the_dashboard_defines(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for model in dashboards.values():
        defined = [v["name"] for v in model["templating"]["list"]]
        for query in panel_queries(model):
            used = re.findall(r"\$\{?(?!__)([A-Za-z_][A-Za-z0-9_]*)", query.sql)
            assert set(used) <= set(defined), f"{query.name} uses {set(used) - set(defined)}"
        # A variable may only use the ones before it (Grafana resolves them in order).
        for position, variable in enumerate(model["templating"]["list"]):
            if variable["type"] == "query":
                used = set(re.findall(r"\$\{?(?!__)([A-Za-z_]\w*)", variable["query"]))
                assert used <= set(defined[:position]), variable["name"]


def test_panels_have_unique_ids_and_fit_the_grid(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, model in dashboards.items():
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps"
                    cells.add((x, y))


def test_the_wall_fits_one_1080p_screen_in_kiosk_mode(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    wall = dashboards["wall"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in wall["panels"])
    assert bottom * GRID_ROW_PX <= 1080
    types = {p["type"] for p in wall["panels"]}
    assert {"geomap", "stat", "table", "timeseries"} <= types
    # A notification's incident link selects the alarm through this variable.
    assert any(v["name"] == "alarm" for v in wall["templating"]["list"])
    big = [p for p in wall["panels"] if p["type"] == "stat"]
    assert all(p["options"]["text"]["valueSize"] >= 48 for p in big)


def test_geomap_points_at_lat_lon_columns_its_query_returns(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    geomap = next(p for p in dashboards["wall"]["panels"] if p["type"] == "geomap")
    location = geomap["options"]["layers"][0]["location"]
    assert location["mode"] == "coords"
    sql = geomap["targets"][0]["rawSql"]
    for column in (location["latitude"], location["longitude"]):
        assert re.search(rf"\.{column}\b", sql), column


def test_environment_shows_the_ispu_bands_and_the_configured_alarm_levels(
    dashboards: dict[str, dict[str, Any]], settings: Settings
) -> None:
    panels = {p["title"]: p for p in dashboards["environment"]["panels"]}
    pm25 = [
        s["value"]
        for s in panels["PM2.5 per desa"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]
    assert pm25 == [None, 15.6, 55.5, 150.5, 250.5]
    water = panels["Tinggi muka air per desa"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    rule = next(r for r in settings.streams.rules if r.id == "water-high")
    assert [s["value"] for s in water][1] == rule.raise_above  # type: ignore[union-attr]


def test_alert_rule_sql_survives_grafanas_environment_expansion() -> None:
    """Grafana expands $NAME in provisioning files; a bare $__timeFilter would become ''."""
    text = (COMMITTED / "provisioning" / "alerting" / "pantau.yaml").read_text()
    model = yaml.safe_load(text)
    for group in model["groups"]:
        for rule in group["rules"]:
            for query in rule["data"]:
                sql = query["model"].get("rawSql", "")
                assert not re.search(r"(?<!\$)\$(?!\$)", sql.replace("$$", "")), rule["uid"]
    uids = [uid for uid, _, _ in rule_queries(model)]
    assert uids == [c.uid for c in alerting.CONDITIONS]
    assert all("$__timeFilter" in sql or "$__timeTo" in sql for _, _, sql in rule_queries(model))
    assert model["policies"][0]["receiver"] == model["contactPoints"][0]["name"]


def test_dashboard_json_is_plain_json(dashboards: dict[str, dict[str, Any]]) -> None:
    for model in dashboards.values():
        assert json.loads(json.dumps(model)) == model


def test_time_to_clean_is_in_minutes_and_coloured_at_the_service_levels(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    panels = {p["title"]: p for p in dashboards["dumping"]["panels"]}
    series, table = panels["Waktu sampai bersih"], panels["Waktu respons per desa"]
    for panel in (series, table):
        assert "FROM alarm_response r" in panel["targets"][0]["rawSql"]
    assert series["type"] == "timeseries" and series["fieldConfig"]["defaults"]["unit"] == "m"
    steps = series["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # Four hours is good, a day the limit.
    assert [s["value"] for s in steps] == [None, 240, 1440]
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in table["fieldConfig"]["overrides"]
    }
    for column in ("Diterima", "Dikirim", "Bersih", "Bersih P90"):
        assert {"id": "unit", "value": "m"} in overrides[column], column
    clean = next(p["value"] for p in overrides["Bersih"] if p["id"] == "thresholds")
    assert [s["value"] for s in clean["steps"]] == [None, 240, 1440]
