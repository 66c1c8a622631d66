"""What people read: wording per alarm and change, numbers, times, places, links, HTML."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pantau.messages import Alert
from streams.templates import Rendered, format_time, render
from tests.factories import ALARM_ID, SAMPLES, T0

WIB = ZoneInfo("Asia/Jakarta")
INCIDENT_URL = "https://wall.example/d/pantau-wall/wall?var-alarm={alarm_id}&orgId=1"


def alert(**changes: Any) -> Alert:
    data = SAMPLES["alert"].model_dump()
    data.update(changes)
    return Alert.model_validate(data)


def camera_alert(**changes: Any) -> Alert:
    return alert(
        **{
            "source_kind": "camera",
            "source_id": "tps-gedeg",
            "last_value": None,
            "quantity": None,
            "threshold": None,
            "message": "",
            "count": 1,
            **changes,
        }
    )


def rendered(a: Alert, language: Any = "id") -> Rendered:
    return render(a, language=language, tz=WIB, incident_url=INCIDENT_URL)


def headline(r: Rendered) -> str:
    return r.text.splitlines()[0]


@pytest.mark.parametrize(
    ("changes", "language", "expected"),
    [
        ({"alarm_type": "dumping", "source_kind": "dumping"}, "id", "⚠️ Sampah liar terdeteksi"),
        ({"alarm_type": "dumping", "source_kind": "dumping"}, "en", "⚠️ Illegal dumping detected"),
        ({"alarm_type": "water-high"}, "id", "⚠️ Tinggi muka air melewati batas"),
        ({"alarm_type": "water-high"}, "en", "⚠️ Water level above threshold"),
        ({"alarm_type": "water-rising"}, "id", "⚠️ Tinggi muka air naik cepat"),
        (
            {"alarm_type": "tps-full", "quantity": "fillingLevel"},
            "id",
            "⚠️ Kontainer TPS hampir penuh",
        ),
        ({"alarm_type": "camera-offline", "source_kind": "camera"}, "id", "⚠️ Kamera offline"),
        ({"alarm_type": "camera_offline", "source_kind": "camera"}, "en", "⚠️ Camera offline"),
        ({"alarm_type": "sensor-silent"}, "id", "⚠️ Sensor tidak mengirim data"),
        (
            {"alarm_type": "pm25-high", "quantity": "pm25"},
            "id",
            "⚠️ Kualitas udara tidak sehat (PM2.5)",
        ),
        ({"alarm_type": "pm10-high", "quantity": "pm10"}, "en", "⚠️ Unhealthy air quality (PM10)"),
        # Types the table does not know: by source kind, then by quantity, then generic.
        ({"alarm_type": "litter-pile", "source_kind": "dumping"}, "id", "⚠️ Sampah liar terdeteksi"),
        (
            {"alarm_type": "threshold", "quantity": "waterLevel"},
            "id",
            "⚠️ Tinggi muka air melewati batas",
        ),
        ({"alarm_type": "threshold", "quantity": "noiseLevel"}, "en", "⚠️ Noise above threshold"),
        ({"alarm_type": "odour-high", "quantity": "h2s"}, "id", "⚠️ Alarm odour-high"),
        ({"alarm_type": "odour-high", "quantity": None}, "en", "⚠️ Alarm odour-high"),
    ],
)
def test_headline_says_what_happened(changes: dict[str, Any], language: str, expected: str) -> None:
    r = rendered(alert(change="opened", **changes), language)
    assert headline(r) == expected


@pytest.mark.parametrize(
    ("change", "language", "expected"),
    [
        ("opened", "id", "⚠️ Tinggi muka air melewati batas"),
        ("reopened", "id", "⚠️ Tinggi muka air melewati batas (terjadi lagi)"),
        ("updated", "en", "⚠️ Water level above threshold (update)"),
        ("escalated", "id", "🔺 Tinggi muka air melewati batas, naik ke kritis"),
        ("escalated", "en", "🔺 Water level above threshold, escalated to critical"),
        ("cleared", "id", "✅ Alarm selesai/kembali normal: Tinggi muka air melewati batas"),
        ("cleared", "en", "✅ Alarm cleared, back to normal: Water level above threshold"),
        ("acknowledged", "id", "👀 Alarm diterima petugas: Tinggi muka air melewati batas"),
        ("dispatched", "id", "🚚 Petugas menuju lokasi: Tinggi muka air melewati batas"),
        ("resolved", "en", "✅ Alarm resolved: Water level above threshold"),
        ("false_positive", "id", "❎ Alarm palsu: Tinggi muka air melewati batas"),
        ("unacknowledged", "id", "⏰ Belum ditanggapi: Tinggi muka air melewati batas"),
        ("unacknowledged", "en", "⏰ Not acknowledged: Water level above threshold"),
        (
            "confirmed",
            "id",
            "✅ Kamera memastikan lokasi sudah bersih: Tinggi muka air melewati batas",
        ),
        ("confirmed", "en", "✅ Camera confirmed the clean-up: Water level above threshold"),
    ],
)
def test_headline_says_what_changed(change: str, language: str, expected: str) -> None:
    assert headline(rendered(alert(change=change), language)) == expected


@pytest.mark.parametrize(
    ("severity", "language", "word"),
    [
        ("critical", "id", "kritis"),
        ("major", "id", "mayor"),
        ("minor", "id", "minor"),
        ("warning", "id", "peringatan"),
        ("info", "id", "info"),
        ("warning", "en", "warning"),
    ],
)
def test_severity_in_words_and_in_the_subject(severity: str, language: str, word: str) -> None:
    r = rendered(alert(severity=severity, change="opened"), language)
    label = "Tingkat" if language == "id" else "Severity"
    assert f"{label}: {word}" in r.text.splitlines()
    assert r.subject.startswith(f"[{word.upper()}] ")


@pytest.mark.parametrize(
    ("quantity", "value", "threshold", "language", "expected"),
    [
        ("waterLevel", 4.25, 4.0, "id", "Nilai: Tinggi muka air 4,25 m (batas 4,00 m)"),
        ("waterLevel", 4.25, 4.0, "en", "Value: Water level 4.25 m (threshold 4.00 m)"),
        ("fillingLevel", 0.93, 0.9, "id", "Nilai: Keterisian 93% (batas 90%)"),
        ("fillingLevel", 0.93, 0.9, "en", "Value: Fill level 93% (threshold 90%)"),
        ("pm25", 61.3, 55.5, "id", "Nilai: PM2.5 61,3 µg/m³ (batas 55,5 µg/m³)"),
        ("pm10", 1234.5, 351.0, "id", "Nilai: PM10 1.234,5 µg/m³ (batas 351,0 µg/m³)"),
        ("pm10", 1234.5, 351.0, "en", "Value: PM10 1,234.5 µg/m³ (threshold 351.0 µg/m³)"),
        ("temperature", 36.5, None, "id", "Nilai: Suhu 36,5 °C"),
        ("noiseLevel", 72.4, 70.0, "en", "Value: Noise 72 dB(A) (threshold 70 dB(A))"),
        ("h2s", 0.25, 0.1, "id", "Nilai: h2s 0,25 (batas 0,1)"),
        ("h2s", 3.0, None, "en", "Value: h2s 3"),
    ],
)
def test_sensor_values_with_units_and_the_languages_decimal_mark(
    quantity: str, value: float, threshold: float | None, language: str, expected: str
) -> None:
    r = rendered(alert(quantity=quantity, last_value=value, threshold=threshold), language)
    assert expected in r.text.splitlines()


def test_no_value_line_for_alarms_without_a_measurement() -> None:
    r = rendered(camera_alert(alarm_type="camera-offline"))
    assert not any(line.startswith("Nilai") for line in r.text.splitlines())


@pytest.mark.parametrize(
    ("at", "language", "expected"),
    [
        (T0, "id", "23 Nov 2026 10:15 WIB"),
        (T0, "en", "23 Nov 2026 10:15 WIB"),
        # 17:30 UTC is already the next day in WIB.
        (datetime(2026, 5, 31, 17, 30, tzinfo=UTC), "id", "1 Jun 2026 00:30 WIB"),
        (datetime(2026, 5, 14, 2, 5, tzinfo=UTC), "id", "14 Mei 2026 09:05 WIB"),
        (datetime(2026, 5, 14, 2, 5, tzinfo=UTC), "en", "14 May 2026 09:05 WIB"),
        (datetime(2026, 8, 17, 3, 0, tzinfo=UTC), "id", "17 Agu 2026 10:00 WIB"),
        (datetime(2026, 8, 17, 3, 0, tzinfo=UTC), "en", "17 Aug 2026 10:00 WIB"),
        (datetime(2026, 10, 28, 0, 0, tzinfo=UTC), "id", "28 Okt 2026 07:00 WIB"),
        (datetime(2026, 12, 31, 16, 59, tzinfo=UTC), "id", "31 Des 2026 23:59 WIB"),
        (datetime(2026, 12, 31, 17, 0, tzinfo=UTC), "en", "1 Jan 2027 00:00 WIB"),
    ],
)
def test_times_are_shown_in_wib_with_the_languages_month_names(
    at: datetime, language: Any, expected: str
) -> None:
    assert format_time(at, language, WIB) == expected
    r = rendered(alert(change="opened", opened_at=at, updated_at=at), language)
    label = "Waktu" if language == "id" else "Time"
    assert f"{label}: {expected}" in r.text.splitlines()


def test_a_later_change_shows_when_it_happened_and_since_when() -> None:
    r = rendered(
        alert(change="acknowledged", acknowledged_at=datetime(2026, 11, 23, 3, 20, tzinfo=UTC))
    )
    lines = r.text.splitlines()
    assert "Waktu: 23 Nov 2026 10:20 WIB" in lines
    assert "Sejak: 23 Nov 2026 10:10 WIB" in lines


@pytest.mark.parametrize(
    ("count", "language", "expected"),
    [(3, "id", "Terpicu 3 kali"), (3, "en", "Triggered 3 times"), (1, "id", None)],
)
def test_repeats_are_counted_when_more_than_one(
    count: int, language: str, expected: str | None
) -> None:
    lines = rendered(alert(count=count), language).text.splitlines()
    if expected is None:
        assert not any("Terpicu" in line for line in lines)
    else:
        assert expected in lines


def test_place_with_desa_kecamatan_and_map_link() -> None:
    a = alert(
        place={
            "name": "TPS Sooko",
            "desa": "Sooko",
            "kecamatan": "Sooko",
            "lat": -7.49,
            "lon": 112.43,
        }
    )
    r = rendered(a)
    lines = r.text.splitlines()
    assert "Lokasi: TPS Sooko, Desa Sooko, Kec. Sooko" in lines
    assert "Peta: https://www.google.com/maps/search/?api=1&query=-7.49,112.43" in lines
    assert '<a href="https://www.google.com/maps/search/?api=1&amp;query=-7.49,112.43">' in r.html
    assert r.subject.endswith(" — TPS Sooko")


def test_without_coordinates_or_place_there_is_no_map_and_the_source_names_it() -> None:
    r = rendered(alert(place=None))
    assert "maps" not in r.text
    assert "Sumber: sensor wl-brantas-lengkong" in r.text.splitlines()
    assert r.subject.endswith(" — wl-brantas-lengkong")


@pytest.mark.parametrize("language", ["id", "en"])
def test_incident_link_carries_the_alarm_id(language: str) -> None:
    r = rendered(alert(), language)
    link = f"https://wall.example/d/pantau-wall/wall?var-alarm={ALARM_ID}&orgId=1"
    assert r.text.splitlines()[-1].endswith(f": {link}")
    assert f'<a href="{link.replace("&", "&amp;")}">' in r.html


def test_indonesian_is_the_default() -> None:
    r = render(alert(change="opened"), tz=WIB, incident_url=INCIDENT_URL)
    assert headline(r) == "⚠️ Tinggi muka air melewati batas"


HOSTILE = '<script>alert("x")</script> & <b>Sooko</b>\nFrom: evil@example.com'


def test_html_escapes_whatever_the_place_and_message_say() -> None:
    a = alert(
        place={"name": HOSTILE, "desa": "<i>Sooko</i>", "kecamatan": "A&B"},
        message="<a href='javascript:x'>klik</a>",
    )
    r = rendered(a)
    assert "<script>" not in r.html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;Sooko&lt;/b&gt;" in r.html
    )
    assert "&lt;i&gt;Sooko&lt;/i&gt;" in r.html
    assert "A&amp;B" in r.html
    # Only the markup the templates themselves write (Telegram's HTML subset).
    tags = set(re.findall(r"</?([a-zA-Z]+)", r.html))
    assert tags <= {"a", "b"}
    # The incident link only: the message's own anchor is text, and no coordinates, no map.
    assert len(re.findall(r"<a ", r.html)) == 1
    # The plain text keeps the name as written, on one line; the subject is one line too.
    assert '<script>alert("x")</script> & <b>Sooko</b> From: evil@example.com' in r.text
    assert "\n" not in r.subject and "\r" not in r.subject
    assert len(r.text.splitlines()) == len(r.html.splitlines())


def test_text_and_html_say_the_same() -> None:
    r = rendered(alert())
    # Strip the markup and entities from the HTML: what remains is the plain text, except
    # that the map link reads "Google Maps".
    plain = re.sub(r"<[^>]+>", "", r.html).replace("&amp;", "&")
    assert plain.splitlines()[0] == r.text.splitlines()[0]
    assert plain.splitlines()[-1] == r.text.splitlines()[-1]
    assert "Peta: Google Maps" in plain.splitlines()


def note_line(r: Rendered) -> str:
    [line] = [line for line in r.text.splitlines() if line.startswith(("Keterangan:", "Note:"))]
    return line


@pytest.mark.parametrize(
    ("changes", "language", "expected"),
    [
        (
            {"change": "unacknowledged", "escalation": 1},
            "id",
            "Keterangan: Belum ada petugas yang menerima alarm ini; diteruskan ke tingkat "
            "berikutnya",
        ),
        (
            {"change": "unacknowledged", "escalation": 1},
            "en",
            "Note: Nobody has acknowledged this alarm; passed on to the next level",
        ),
        (
            {"change": "confirmed", "state": "RESOLVED"},
            "id",
            "Keterangan: Kamera melihat lokasi sudah bersih setelah dinyatakan selesai",
        ),
        (
            {"change": "reopened", "resolved_at": T0 - timedelta(minutes=10, seconds=20)},
            "id",
            "Keterangan: Objek masih terlihat 10 menit setelah dinyatakan selesai",
        ),
        (
            {"change": "reopened", "resolved_at": T0 - timedelta(minutes=12)},
            "en",
            "Note: Object still seen 12 minutes after it was marked resolved",
        ),
        # A quiet re-open after a clear is no news of a clean-up: its own message stays.
        ({"change": "reopened"}, "en", "Note: water-high at Brantas"),
        ({"change": "opened"}, "id", "Keterangan: water-high at Brantas"),
    ],
)
def test_what_the_pipeline_did_reads_in_the_language(
    changes: dict[str, Any], language: str, expected: str
) -> None:
    a = alert(message="water-high at Brantas", updated_at=T0, by="", **changes)
    assert note_line(rendered(a, language)) == expected


# The alarm's fields → (language, headline, value line, note line)
VIEW_CASES: list[tuple[dict[str, Any], str, str, str, str]] = [
    (
        {"alarm_type": "camera_view_changed", "quantity": "changed_frac", "last_value": 0.82},
        "id",
        "⚠️ Pandangan kamera berubah",
        "Nilai: Bagian gambar yang berubah 82%",
        "Keterangan: Kamera bergeser (diputar, tersenggol atau fokusnya berubah); periksa "
        "apakah zona pengawasan masih sesuai gambar, lalu tandai selesai",
    ),
    (
        {"alarm_type": "camera_view_changed", "quantity": "changed_frac", "last_value": 0.82},
        "en",
        "⚠️ Camera view changed",
        "Value: Share of the picture changed 82%",
        "Note: The camera was moved (turned, bumped or refocused); check that its zones still "
        "fit the picture, then resolve the alarm",
    ),
    (
        {"alarm_type": "camera_tampered", "quantity": "brightness_spread", "last_value": 3.46},
        "id",
        "⚠️ Kamera tertutup atau buram",
        "Nilai: Sebaran kecerahan 3,5",
        "Keterangan: Gambar kamera hampir seragam: lensa tertutup, disemprot, atau tanpa "
        "sinyal; selama itu pembuangan sampah tidak terdeteksi",
    ),
    (
        {"alarm_type": "camera_tampered", "quantity": "sharpness_ratio", "last_value": 0.08},
        "en",
        "⚠️ Camera covered or blurred",
        "Value: Sharpness against usual 8%",
        "Note: The picture lost its detail: lens fogged, smeared or out of focus; dumping "
        "goes unseen meanwhile",
    ),
    (
        {
            "alarm_type": "camera_tampered",
            "quantity": "brightness_spread",
            "last_value": 40.0,
            "change": "cleared",
            "state": "CLEARED",
            "cleared_at": T0,
        },
        "id",
        "✅ Alarm selesai/kembali normal: Kamera tertutup atau buram",
        "Nilai: Sebaran kecerahan 40,0",
        "Keterangan: Gambar kamera kembali normal; deteksi berjalan lagi",
    ),
]


@pytest.mark.parametrize(("changes", "language", "head", "value", "note"), VIEW_CASES)
def test_camera_view_alarms_say_what_the_detector_saw_in_the_language(
    changes: dict[str, Any], language: str, head: str, value: str, note: str
) -> None:
    changes = {"change": "opened", "severity": "major", **changes}
    a = camera_alert(message="view of TPS Gedeg changed", updated_at=T0, by="", **changes)
    r = rendered(a, language)
    assert headline(r) == head
    assert value in r.text.splitlines()
    assert note_line(r) == note
    assert "view of TPS Gedeg" not in r.text


def test_camera_view_alarm_passed_on_says_so_not_what_was_seen() -> None:
    a = camera_alert(
        alarm_type="camera_tampered",
        quantity="brightness_spread",
        last_value=3.5,
        change="unacknowledged",
        escalation=1,
        by="",
    )
    assert note_line(rendered(a, "en")) == (
        "Note: Nobody has acknowledged this alarm; passed on to the next level"
    )
