"""What people read: an alert rendered as a subject, plain text and HTML, in Bahasa
Indonesia (default) or English.

The wording lives in one table per language; `render` only picks entries and fills them in.
The HTML uses Telegram's subset (b, a) with newlines as line breaks, so the same text serves
a Telegram message and, wrapped by the e-mail channel, an e-mail. Every line is closed on its
own line, so a channel may shorten a message by dropping whole lines.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypedDict
from zoneinfo import ZoneInfo

from pantau.messages import AlarmChange, Alert, Severity

Language = Literal["id", "en"]


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Quantity:
    """How a measured quantity is shown: value x scale, this many decimals, then the unit."""

    unit: str
    decimals: int
    scale: float = 1.0


# FIWARE attribute names, as sensor readings carry them; fillingLevel arrives as 0..1.
QUANTITIES: dict[str, Quantity] = {
    "waterLevel": Quantity(" m", 2),
    "pm25": Quantity(" µg/m³", 1),
    "pm10": Quantity(" µg/m³", 1),
    "fillingLevel": Quantity("%", 0, scale=100.0),
    "temperature": Quantity(" °C", 1),
    "noiseLevel": Quantity(" dB(A)", 0),
    # What the detector measured on a camera's picture (CameraView).
    "changed_frac": Quantity("%", 0, scale=100.0),
    "brightness_spread": Quantity("", 1),
    "sharpness_ratio": Quantity("%", 0, scale=100.0),
}
# Alarms about a camera's view, whose note says what the detector saw (by the measured
# quantity) in the reader's language; "-" and "_" are the same here.
VIEW_ALARMS = frozenset({"camera-view-changed", "camera-tampered"})
_VIEW_CONDITION = {
    "changed_frac": "moved",
    "brightness_spread": "covered",
    "sharpness_ratio": "blurred",
}


class Wording(TypedDict):
    months: str  # twelve abbreviations, space-separated
    severity: dict[Severity, str]
    # What happened, by alarm type (rule id); "-" and "_" are the same here.
    alarm_types: dict[str, str]
    # For alarm types not listed: by the measured quantity, then a generic line.
    by_quantity: dict[str, str]
    quantity_names: dict[str, str]
    dumping: str
    generic: str
    # Headline per change: emoji and pattern around {what}, {severity}.
    changes: dict[AlarmChange, tuple[str, str]]
    # The note of a version the pipeline made, instead of its (English) message:
    # "unacknowledged", "confirmed", and "still_present" for a dumping alarm the camera
    # still saw {minutes} after it was resolved.
    pipeline_notes: dict[str, str]
    # The note of a camera-view alarm: "moved", "covered", "blurred" when raised, "restored"
    # when it clears.
    view_notes: dict[str, str]
    source_kinds: dict[str, str]
    labels: dict[str, str]
    times: str


WORDING: dict[Language, Wording] = {
    "id": {
        "months": "Jan Feb Mar Apr Mei Jun Jul Agu Sep Okt Nov Des",
        "severity": {
            "critical": "kritis",
            "major": "mayor",
            "minor": "minor",
            "warning": "peringatan",
            "info": "info",
        },
        "alarm_types": {
            "dumping": "Sampah liar terdeteksi",
            "water-high": "Tinggi muka air melewati batas",
            "water-rising": "Tinggi muka air naik cepat",
            "tps-full": "Kontainer TPS hampir penuh",
            "fill-level": "Kontainer TPS hampir penuh",
            "camera-offline": "Kamera offline",
            "camera-view-changed": "Pandangan kamera berubah",
            "camera-tampered": "Kamera tertutup atau buram",
            "sensor-silent": "Sensor tidak mengirim data",
            "stale": "Sensor tidak mengirim data",
            "pm25-high": "Kualitas udara tidak sehat (PM2.5)",
            "pm10-high": "Kualitas udara tidak sehat (PM10)",
            "open-burning": "Dugaan pembakaran sampah terbuka",
            "tps-overflow": "TPS penuh, sampah dibuang di sampingnya",
            "river-dumping": "Sampah di tepi sungai, air di hilir naik",
        },
        "by_quantity": {
            "waterLevel": "Tinggi muka air melewati batas",
            "pm25": "Kualitas udara tidak sehat (PM2.5)",
            "pm10": "Kualitas udara tidak sehat (PM10)",
            "fillingLevel": "Kontainer TPS hampir penuh",
            "temperature": "Suhu melewati batas",
            "noiseLevel": "Kebisingan melewati batas",
        },
        "quantity_names": {
            "waterLevel": "Tinggi muka air",
            "pm25": "PM2.5",
            "pm10": "PM10",
            "fillingLevel": "Keterisian",
            "temperature": "Suhu",
            "noiseLevel": "Kebisingan",
            "changed_frac": "Bagian gambar yang berubah",
            "brightness_spread": "Sebaran kecerahan",
            "sharpness_ratio": "Ketajaman dibanding biasanya",
        },
        "dumping": "Sampah liar terdeteksi",
        "generic": "Alarm {alarm_type}",
        "changes": {
            "opened": ("⚠️", "{what}"),
            "reopened": ("⚠️", "{what} (terjadi lagi)"),
            "updated": ("⚠️", "{what} (pembaruan)"),
            "escalated": ("🔺", "{what}, naik ke {severity}"),
            "cleared": ("✅", "Alarm selesai/kembali normal: {what}"),
            "acknowledged": ("👀", "Alarm diterima petugas: {what}"),
            "dispatched": ("🚚", "Petugas menuju lokasi: {what}"),
            "resolved": ("✅", "Alarm selesai ditangani: {what}"),
            "false_positive": ("❎", "Alarm palsu: {what}"),
            "unacknowledged": ("⏰", "Belum ditanggapi: {what}"),
            "confirmed": ("✅", "Kamera memastikan lokasi sudah bersih: {what}"),
        },
        "pipeline_notes": {
            "unacknowledged": "Belum ada petugas yang menerima alarm ini; diteruskan ke "
            "tingkat berikutnya",
            "confirmed": "Kamera melihat lokasi sudah bersih setelah dinyatakan selesai",
            "still_present": "Objek masih terlihat {minutes} menit setelah dinyatakan selesai",
        },
        "view_notes": {
            "moved": "Kamera bergeser (diputar, tersenggol atau fokusnya berubah); periksa "
            "apakah zona pengawasan masih sesuai gambar, lalu tandai selesai",
            "covered": "Gambar kamera hampir seragam: lensa tertutup, disemprot, atau tanpa "
            "sinyal; selama itu pembuangan sampah tidak terdeteksi",
            "blurred": "Gambar kamera kehilangan detail: lensa berembun, kotor, atau tidak "
            "fokus; selama itu pembuangan sampah tidak terdeteksi",
            "restored": "Gambar kamera kembali normal; deteksi berjalan lagi",
        },
        "source_kinds": {"sensor": "sensor", "camera": "kamera", "dumping": "kamera"},
        "labels": {
            "severity": "Tingkat",
            "place": "Lokasi",
            "desa": "Desa",
            "kecamatan": "Kec.",
            "map": "Peta",
            "value": "Nilai",
            "threshold": "batas",
            "time": "Waktu",
            "opened": "Sejak",
            "note": "Keterangan",
            "source": "Sumber",
            "link": "Detail",
        },
        "times": "Terpicu {count} kali",
    },
    "en": {
        "months": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
        "severity": {
            "critical": "critical",
            "major": "major",
            "minor": "minor",
            "warning": "warning",
            "info": "info",
        },
        "alarm_types": {
            "dumping": "Illegal dumping detected",
            "water-high": "Water level above threshold",
            "water-rising": "Water level rising fast",
            "tps-full": "TPS container almost full",
            "fill-level": "TPS container almost full",
            "camera-offline": "Camera offline",
            "camera-view-changed": "Camera view changed",
            "camera-tampered": "Camera covered or blurred",
            "sensor-silent": "Sensor not sending data",
            "stale": "Sensor not sending data",
            "pm25-high": "Unhealthy air quality (PM2.5)",
            "pm10-high": "Unhealthy air quality (PM10)",
            "open-burning": "Suspected open burning of waste",
            "tps-overflow": "TPS full, rubbish dumped beside it",
            "river-dumping": "Dumping on the river bank, water rising downstream",
        },
        "by_quantity": {
            "waterLevel": "Water level above threshold",
            "pm25": "Unhealthy air quality (PM2.5)",
            "pm10": "Unhealthy air quality (PM10)",
            "fillingLevel": "TPS container almost full",
            "temperature": "Temperature above threshold",
            "noiseLevel": "Noise above threshold",
        },
        "quantity_names": {
            "waterLevel": "Water level",
            "pm25": "PM2.5",
            "pm10": "PM10",
            "fillingLevel": "Fill level",
            "temperature": "Temperature",
            "noiseLevel": "Noise",
            "changed_frac": "Share of the picture changed",
            "brightness_spread": "Brightness spread",
            "sharpness_ratio": "Sharpness against usual",
        },
        "dumping": "Illegal dumping detected",
        "generic": "Alarm {alarm_type}",
        "changes": {
            "opened": ("⚠️", "{what}"),
            "reopened": ("⚠️", "{what} (again)"),
            "updated": ("⚠️", "{what} (update)"),
            "escalated": ("🔺", "{what}, escalated to {severity}"),
            "cleared": ("✅", "Alarm cleared, back to normal: {what}"),
            "acknowledged": ("👀", "Alarm acknowledged: {what}"),
            "dispatched": ("🚚", "Crew dispatched: {what}"),
            "resolved": ("✅", "Alarm resolved: {what}"),
            "false_positive": ("❎", "False alarm: {what}"),
            "unacknowledged": ("⏰", "Not acknowledged: {what}"),
            "confirmed": ("✅", "Camera confirmed the clean-up: {what}"),
        },
        "pipeline_notes": {
            "unacknowledged": "Nobody has acknowledged this alarm; passed on to the next level",
            "confirmed": "The camera saw the spot clean after it was marked resolved",
            "still_present": "Object still seen {minutes} minutes after it was marked resolved",
        },
        "view_notes": {
            "moved": "The camera was moved (turned, bumped or refocused); check that its zones "
            "still fit the picture, then resolve the alarm",
            "covered": "The picture is near-uniform: lens covered, sprayed, or no signal; "
            "dumping goes unseen meanwhile",
            "blurred": "The picture lost its detail: lens fogged, smeared or out of focus; "
            "dumping goes unseen meanwhile",
            "restored": "The picture is back to normal; detection goes on",
        },
        "source_kinds": {"sensor": "sensor", "camera": "camera", "dumping": "camera"},
        "labels": {
            "severity": "Severity",
            "place": "Place",
            "desa": "Desa",
            "kecamatan": "Kec.",
            "map": "Map",
            "value": "Value",
            "threshold": "threshold",
            "time": "Time",
            "opened": "Since",
            "note": "Note",
            "source": "Source",
            "link": "Details",
        },
        "times": "Triggered {count} times",
    },
}

MAP_URL = "https://www.google.com/maps/search/?api=1&query={lat},{lon}"


@dataclass(frozen=True)
class _Line:
    """One line of the message; `href` makes the value (or `link_text`) a link in HTML."""

    value: str
    label: str = ""
    href: str | None = None
    link_text: str | None = None
    bold: bool = False

    def text(self) -> str:
        return f"{self.label}: {self.value}" if self.label else self.value

    def html(self) -> str:
        value = html.escape(self.value)
        if self.href is not None:
            shown = html.escape(self.link_text) if self.link_text else value
            value = f'<a href="{html.escape(self.href)}">{shown}</a>'
        if self.bold:
            value = f"<b>{value}</b>"
        return f"{html.escape(self.label)}: {value}" if self.label else value


def render(alert: Alert, *, language: Language = "id", tz: ZoneInfo, incident_url: str) -> Rendered:
    """The alert as people read it, times in `tz` (WIB for Mojokerto)."""
    words = WORDING[language]
    labels = words["labels"]
    severity = words["severity"][alert.severity]
    what = describe(alert, language)
    emoji, pattern = words["changes"][alert.change]
    headline = pattern.format(what=what, severity=severity)

    lines = [
        _Line(f"{emoji} {headline}", bold=True),
        _Line(severity, labels["severity"]),
    ]
    place = alert.place
    if place is not None:
        where = [place.name.strip()] if place.name.strip() else []
        if place.desa:
            where.append(f"{labels['desa']} {place.desa}")
        if place.kecamatan:
            where.append(f"{labels['kecamatan']} {place.kecamatan}")
        if where:
            lines.append(_Line(", ".join(where), labels["place"]))
        if place.lat is not None and place.lon is not None:
            url = MAP_URL.format(lat=place.lat, lon=place.lon)
            lines.append(_Line(url, labels["map"], href=url, link_text="Google Maps"))
    value = measured_value(alert, language)
    if value:
        lines.append(_Line(value, labels["value"]))
    if alert.count > 1:
        lines.append(_Line(words["times"].format(count=alert.count)))
    changed_at = _changed_at(alert)
    lines.append(_Line(format_time(changed_at, language, tz), labels["time"]))
    if alert.opened_at != changed_at:
        lines.append(_Line(format_time(alert.opened_at, language, tz), labels["opened"]))
    note = pipeline_note(alert, language) or alert.message.strip()
    if note:
        lines.append(_Line(note, labels["note"]))
    source_kind = words["source_kinds"].get(alert.source_kind, alert.source_kind)
    lines.append(_Line(f"{source_kind} {alert.source_id}", labels["source"]))
    link = incident_link(alert, incident_url)
    if link:
        lines.append(_Line(link, labels["link"], href=link))

    # Line breaks in free text (a place name, a note) would split a line in two, and a
    # header may not contain them at all.
    lines = [replace(line, value=" ".join(line.value.split())) for line in lines]
    subject_where = (place.name.strip() if place is not None else "") or alert.source_id
    subject = f"[{severity.upper()}] {headline} — {subject_where}"
    return Rendered(
        subject=" ".join(subject.split()),
        text="\n".join(line.text() for line in lines),
        html="\n".join(line.html() for line in lines),
    )


def describe(alert: Alert, language: Language) -> str:
    """What the alarm is about, in a few words."""
    words = WORDING[language]
    known = words["alarm_types"].get(alert.alarm_type.lower().replace("_", "-"))
    if known is not None:
        return known
    if alert.source_kind == "dumping":
        return words["dumping"]
    if alert.quantity is not None and alert.quantity in words["by_quantity"]:
        return words["by_quantity"][alert.quantity]
    return words["generic"].format(alarm_type=alert.alarm_type)


def pipeline_note(alert: Alert, language: Language) -> str | None:
    """The note of a version the pipeline made for people to read (passed on, confirmed or
    re-opened by the camera, what the detector saw on a camera's view), in the language;
    None for any other version."""
    if alert.by:
        return None
    if alert.alarm_type.lower().replace("_", "-") in VIEW_ALARMS:
        view_note = _view_note(alert, language)
        if view_note is not None:
            return view_note
    notes = WORDING[language]["pipeline_notes"]
    if alert.change in ("unacknowledged", "confirmed"):
        return notes[alert.change]
    if alert.change == "reopened" and alert.resolved_at is not None:
        # Only the camera re-opens a resolved alarm; the minutes since the resolve.
        minutes = int((alert.updated_at - alert.resolved_at).total_seconds() // 60)
        return notes["still_present"].format(minutes=minutes)
    return None


def _view_note(alert: Alert, language: Language) -> str | None:
    """What the detector saw, for a camera-view alarm raised or cleared; None for its other
    versions (their message says what happened)."""
    notes = WORDING[language]["view_notes"]
    if alert.change == "cleared":
        return notes["restored"]
    condition = _VIEW_CONDITION.get(alert.quantity or "")
    if condition is None or alert.change not in ("opened", "reopened", "escalated"):
        return None
    return notes[condition]


def measured_value(alert: Alert, language: Language) -> str:
    """e.g. "Tinggi muka air 4,25 m (batas 4,00 m)"; empty when the alert measured nothing."""
    if alert.last_value is None and alert.threshold is None:
        return ""
    words = WORDING[language]
    quantity = alert.quantity or ""
    shown = QUANTITIES.get(quantity)
    parts = []
    if quantity:
        parts.append(words["quantity_names"].get(quantity, quantity))
    if alert.last_value is not None:
        parts.append(_format_value(alert.last_value, shown, language))
    text = " ".join(parts)
    if alert.threshold is not None:
        limit = _format_value(alert.threshold, shown, language)
        text += f" ({words['labels']['threshold']} {limit})"
    return text.strip()


def format_number(value: float, decimals: int, language: Language) -> str:
    """Thousands grouped; Indonesian swaps the separators: 1.234,5 against 1,234.5."""
    text = f"{value:,.{decimals}f}"
    if language == "id":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_time(at: datetime, language: Language, tz: ZoneInfo) -> str:
    """e.g. "23 Nov 2026 10:15 WIB" (month names in the language)."""
    local = at.astimezone(tz)
    month = WORDING[language]["months"].split()[local.month - 1]
    zone = local.tzname() or tz.key
    return f"{local.day} {month} {local.year} {local:%H:%M} {zone}"


def incident_link(alert: Alert, incident_url: str) -> str:
    """The incident page of the alarm; `{alarm_id}` in the configured URL is replaced."""
    return incident_url.replace("{alarm_id}", str(alert.alarm_id))


def _format_value(value: float, shown: Quantity | None, language: Language) -> str:
    if shown is None:
        # Unknown unit: as many decimals as the value needs, at most two.
        text = format_number(value, 2, language)
        decimal = "," if language == "id" else "."
        if decimal in text:
            text = text.rstrip("0").rstrip(decimal)
        return text
    return format_number(value * shown.scale, shown.decimals, language) + shown.unit


def _changed_at(alert: Alert) -> datetime:
    by_change = {
        "acknowledged": alert.acknowledged_at,
        "dispatched": alert.dispatched_at,
        "resolved": alert.resolved_at,
        "cleared": alert.cleared_at,
    }
    return by_change.get(alert.change) or alert.updated_at
