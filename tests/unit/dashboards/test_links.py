"""Links from the dashboards into the incident console: a row of the wall's incidents, a point
of its map, a recurring site, the evidence still. What a click opens is worked out here the
way Grafana 11.6 does it: the field's data links after the panel's overrides, then the
dashboard's variables and the clicked row's fields put into the URL, percent-encoded as
encodeURI does."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from dashboards.common import CONSOLE_VARIABLE
from dashboards.export import render_dashboards, render_files
from pantau.settings import ConsoleSettings, NotifySettings, Settings, load_settings
from tests.conftest import REPO

COMMITTED = REPO / "dashboards" / "grafana"
ALARM = "0b3c8f6e-5a1d-4c4e-9a57-2f0d6b1e7c21"
ADDRESSES = [
    "http://localhost:8090",
    "https://konsol.mojokertokab.go.id/",
    "https://cc.example/pantau",
]
# What encodeURI leaves alone, less the !'()* Grafana's strict variant encodes as well.
_URI_SAFE = ";,/?:@&=+$-_.~#"


def _settings(public_url: str | None = None) -> Settings:
    env = {"PANTAU__CONSOLE__PUBLIC_URL": public_url} if public_url else {}
    return load_settings(REPO / "configs" / "pantau.yaml", env)


def _panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in dashboard["panels"] if p["title"] == title)


def _override(panel: dict[str, Any], field: str, prop: str) -> Any:
    """The value of a field-config property for one field of query A after the overrides, as
    Grafana applies them: in order, the last one that matches wins."""
    config = panel["fieldConfig"]
    value = config["defaults"].get(prop)
    custom = prop.removeprefix("custom.")
    if custom != prop:
        value = config["defaults"].get("custom", {}).get(custom)
    for override in config.get("overrides", []):
        matcher = override["matcher"]
        assert matcher["id"] in ("byName", "byFrameRefID"), matcher
        if (matcher["id"], matcher["options"]) in (("byName", field), ("byFrameRefID", "A")):
            for item in override["properties"]:
                if item["id"] == prop:
                    value = item["value"]
    return value


def _variables(dashboard: dict[str, Any]) -> dict[str, str]:
    return {
        v["name"]: v["query"]
        for v in dashboard["templating"]["list"]
        if v["type"] in ("constant", "textbox")
    }


def _interpolate(url: str, variables: dict[str, str], row: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("__data.fields."):
            text = row[name.removeprefix("__data.fields.")]
        else:
            text = variables[name]
        return quote(text, safe=_URI_SAFE)

    href = re.sub(r"\$\{([^}:]+)\}", value, url)
    assert "$" not in href, href
    return href


def _clicks(dashboard: dict[str, Any], title: str, field: str, row: dict[str, str]) -> list[str]:
    """Where a click on `field` of `row` in the panel leads."""
    panel = _panel(dashboard, title)
    links = _override(panel, field, "links") or []
    return [_interpolate(link["url"], _variables(dashboard), row) for link in links]


@pytest.mark.parametrize("address", ADDRESSES)
def test_a_row_of_the_walls_incidents_opens_its_page_in_the_console(address: str) -> None:
    settings = _settings(address)
    wall = render_dashboards(settings)["wall"]
    row = {"Waktu": "1767580000000", "Kamera": "TPS Gedeg", "Status": "OPEN", "Alarm": ALARM}
    for field in ("Waktu", "Desa", "Kamera", "Zona", "Status"):
        assert _clicks(wall, "Insiden terbaru", field, row) == [
            settings.console.incident_url(ALARM)
        ], field


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_evidence_cell_opens_the_alert_still_through_the_console(address: str) -> None:
    settings = _settings(address)
    wall = render_dashboards(settings)["wall"]
    base = settings.console.public_url.rstrip("/")
    assert _clicks(wall, "Insiden terbaru", "Bukti", {"Bukti": "foto", "Alarm": ALARM}) == [
        f"{base}/api/v1/alarms/{ALARM}/evidence/alert"
    ]


def test_the_alarm_id_the_links_use_is_returned_but_not_shown() -> None:
    wall = render_dashboards(_settings())["wall"]
    panel = _panel(wall, "Insiden terbaru")
    assert re.search(r'alarm_id::text AS "Alarm"', panel["targets"][0]["rawSql"])
    assert _override(panel, "Alarm", "custom.hidden") is True
    assert _override(panel, "Kamera", "custom.hidden") is None


@pytest.mark.parametrize("address", ADDRESSES)
def test_a_point_of_the_map_opens_its_incident_or_the_alarms_of_its_source(address: str) -> None:
    settings = _settings(address)
    wall = render_dashboards(settings)["wall"]
    base = settings.console.public_url.rstrip("/")
    incident = {"kind": "insiden", "id": ALARM, "name": "TPS Gedeg", "link": f"/incidents/{ALARM}"}
    camera = {"kind": "kamera", "id": "tps-gedeg", "link": "/incidents?source=tps-gedeg"}
    for field in ("kind", "name", "level"):
        assert _clicks(wall, "Peta", field, incident) == [settings.console.incident_url(ALARM)]
        assert _clicks(wall, "Peta", field, camera) == [f"{base}/incidents?source=tps-gedeg"]


def test_the_maps_links_are_reachable_from_its_tooltip() -> None:
    """Grafana's geomap shows a point's links in its tooltip, gathered from the fields the
    tooltip shows: the tooltip must be on, and a shown field must carry the link."""
    panel = _panel(render_dashboards(_settings())["wall"], "Peta")
    assert panel["options"]["tooltip"]["mode"] == "details"
    assert all(layer.get("tooltip") for layer in panel["options"]["layers"])
    assert _override(panel, "link", "custom.hideFrom") == {
        "legend": False,
        "tooltip": True,
        "viz": False,
    }
    assert _override(panel, "name", "custom.hideFrom") is None
    assert _override(panel, "name", "links")


@pytest.mark.parametrize(
    ("title", "fields"),
    [
        ("Lokasi berulang", ("Kamera", "Zona", "Insiden", "Terakhir")),
        ("Alarm keliru per kamera", ("Kamera", "Keliru", "Bagian keliru", "Alasan terbanyak")),
    ],
)
def test_a_cameras_row_opens_the_console_list_of_its_camera(
    title: str, fields: tuple[str, ...]
) -> None:
    settings = _settings()
    dumping = render_dashboards(settings)["dumping"]
    row = {"Kamera": "TPS Gedeg", "Insiden": "4", "camera_id": "tps-gedeg"}
    for field in fields:
        assert _clicks(dumping, title, field, row) == [
            "http://localhost:8090/incidents?source=tps-gedeg"
        ]
    assert _override(_panel(dumping, title), "camera_id", "custom.hidden") is True


def test_every_link_names_a_defined_variable_and_a_column_its_query_returns() -> None:
    for name, model in render_dashboards(_settings()).items():
        defined = {v["name"] for v in model["templating"]["list"]}
        for panel in model["panels"]:
            sql = " ".join(t["rawSql"] for t in panel["targets"])
            config = panel.get("fieldConfig", {})
            links = list(config.get("defaults", {}).get("links", []))
            for override in config.get("overrides", []):
                for item in override["properties"]:
                    if item["id"] == "links":
                        links += item["value"]
            for link in links:
                assert link["url"].startswith("${" + CONSOLE_VARIABLE + "}"), link
                for ref in re.findall(r"\$\{([^}]+)\}", link["url"]):
                    column = ref.removeprefix("__data.fields.")
                    if column == ref:
                        assert ref in defined, f"{name}/{panel['title']}: ${{{ref}}}"
                    else:
                        returned = (
                            rf'(\bAS\s+"?{re.escape(column)}"?|\.{re.escape(column)})\s*(,|\n|$)'
                        )
                        assert re.search(returned, sql), f"{name}/{panel['title']}: {column}"


def test_the_console_address_is_set_in_one_place() -> None:
    address = "https://konsol.mojokertokab.go.id"
    dashboards = render_dashboards(_settings(address + "/"))
    linking = {"wall", "dumping"}
    for name, model in dashboards.items():
        text = str(model)
        constants = [v for v in model["templating"]["list"] if v["name"] == CONSOLE_VARIABLE]
        if name in linking:
            (variable,) = constants
            assert variable["type"] == "constant" and variable["hide"] == 2
            assert variable["query"] == address
            assert text.count(address) == 1, name
        else:
            assert not constants and address not in text, name


def test_no_file_uri_in_any_dashboard_or_provisioning_file() -> None:
    for relative, content in render_files(_settings()).items():
        assert "file://" not in content, relative
    for path in COMMITTED.rglob("*"):
        if path.is_file():
            assert "file://" not in path.read_text(encoding="utf-8"), path


def test_a_notification_and_the_wall_open_the_same_incident_page() -> None:
    """Out of the box the link in a message and a click on the wall lead to one page."""
    console = ConsoleSettings()
    assert NotifySettings().incident_url.replace("{alarm_id}", ALARM) == console.incident_url(ALARM)
    wall = render_dashboards(_settings())["wall"]
    assert _clicks(wall, "Insiden terbaru", "Kamera", {"Alarm": ALARM}) == [
        console.incident_url(ALARM)
    ]
