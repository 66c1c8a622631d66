"""The console's words, in Bahasa Indonesia (default) and English."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

Language = Literal["id", "en"]
LANGUAGES: tuple[Language, ...] = ("id", "en")

_WORDS: dict[str, tuple[str, str]] = {
    # (Bahasa Indonesia, English)
    "title": ("Konsol Insiden", "Incident console"),
    "incidents": ("Insiden", "Incidents"),
    "login": ("Masuk", "Log in"),
    "logout": ("Keluar", "Log out"),
    "username": ("Nama pengguna", "User name"),
    "password": ("Kata sandi", "Password"),
    "login_failed": ("Nama pengguna atau kata sandi salah.", "Wrong user name or password."),
    "login_limited": (
        "Terlalu banyak percobaan. Coba lagi dalam {s} detik.",
        "Too many attempts. Try again in {s} seconds.",
    ),
    "state": ("Status", "State"),
    "type": ("Jenis", "Type"),
    "place": ("Lokasi", "Place"),
    "desa": ("Desa", "Desa"),
    "kecamatan": ("Kecamatan", "Kecamatan"),
    "source": ("Kamera/sensor", "Camera/sensor"),
    "since": ("Sejak", "Since"),
    "until": ("Sampai", "Until"),
    "filter": ("Saring", "Filter"),
    "any": ("semua", "any"),
    "age": ("Umur", "Age"),
    "severity": ("Tingkat", "Severity"),
    "opened_at": ("Dibuka", "Opened"),
    "assignee": ("Penanggung jawab", "Assigned to"),
    "dispatched_to": ("Dikirim ke", "Dispatched to"),
    "no_incidents": ("Tidak ada insiden.", "No incidents."),
    "live": ("langsung", "live"),
    "offline": ("terputus, menyambung ulang…", "disconnected, reconnecting…"),
    "more": ("Berikutnya", "Next"),
    "history": ("Riwayat", "History"),
    "evidence": ("Bukti", "Evidence"),
    "alert_still": ("Foto saat peringatan", "Still at the alert"),
    "before_still": ("Foto sebelum", "Still before"),
    "owner_crop": ("Pelaku", "Owner"),
    "clip": ("Video", "Clip"),
    "photo": ("Foto", "Photo"),
    "map": ("Peta", "Map"),
    "open_map": ("Buka di peta", "Open in a map"),
    "chart": ("Grafik sensor", "Sensor chart"),
    "actions": ("Tindakan", "Actions"),
    "ack": ("Terima", "Acknowledge"),
    "dispatch": ("Kirim petugas", "Dispatch"),
    "resolve": ("Selesai", "Resolve"),
    "false_positive": ("Alarm palsu", "False positive"),
    "comment": ("Komentar", "Comment"),
    "assign": ("Tugaskan", "Assign"),
    "note": ("Catatan", "Note"),
    "to_whom": ("Kepada", "To whom"),
    "reason": ("Alasan", "Reason"),
    "send": ("Kirim", "Send"),
    "cancel": ("Batal", "Cancel"),
    "sent_waiting": ("Terkirim, menunggu keputusan…", "Sent, waiting for the decision…"),
    "applied": ("Tercatat.", "Recorded."),
    "refused": ("Ditolak", "Refused"),
    "no_evidence": ("Belum ada bukti.", "No evidence yet."),
    "evidence_error": ("Bukti tidak lengkap", "Evidence incomplete"),
    "when": ("Waktu", "When"),
    "who": ("Oleh", "By"),
    "device": ("Dari", "From"),
    "what": ("Perubahan", "Change"),
    "pipeline": ("sistem", "pipeline"),
    "not_allowed": ("Anda tidak berhak atas insiden ini.", "You may not see this incident."),
    "not_found": ("Insiden tidak ditemukan.", "No such incident."),
    "view_only": ("Hanya lihat", "View only"),
    "value": ("Nilai", "Value"),
    "threshold": ("Ambang", "Threshold"),
    "coordinates": ("Koordinat", "Coordinates"),
    "language": ("English", "Bahasa Indonesia"),
    "telegram": ("Telegram", "Telegram"),
    "telegram_intro": (
        "Hubungkan akun Telegram Anda untuk menekan tombol Terima, Berangkat, Selesai dan "
        "Alarm keliru langsung di pesan alarm.",
        "Link your Telegram account to press Acknowledge, Dispatch, Resolve and False "
        "positive right on the alarm messages.",
    ),
    "telegram_make": ("Buat kode", "Make a code"),
    "telegram_send": (
        "Kirim pesan ini ke bot Pantau di Telegram dalam {h} jam:",
        "Send this to the Pantau bot on Telegram within {h} hours:",
    ),
    # States
    "OPEN": ("Baru", "Open"),
    "ACK": ("Diterima", "Acknowledged"),
    "DISPATCHED": ("Petugas dikirim", "Dispatched"),
    "RESOLVED": ("Selesai", "Resolved"),
    "FALSE_POSITIVE": ("Alarm palsu", "False positive"),
    "CLEARED": ("Pulih", "Cleared"),
    # Changes
    "opened": ("dibuka", "opened"),
    "updated": ("diperbarui", "updated"),
    "escalated": ("meningkat", "escalated"),
    "reopened": ("dibuka lagi", "reopened"),
    "cleared": ("pulih", "cleared"),
    "acknowledged": ("diterima", "acknowledged"),
    "dispatched": ("petugas dikirim", "dispatched"),
    "resolved": ("selesai", "resolved"),
    "commented": ("komentar", "comment"),
    "assigned": ("ditugaskan", "assigned"),
    "unacknowledged": ("belum diterima, diteruskan", "not acknowledged, escalated"),
    "confirmed": ("bersih, dikonfirmasi kamera", "clean, confirmed by the camera"),
    # False-positive reasons
    "not_rubbish": ("bukan sampah", "not rubbish"),
    "belongs_there": ("benda memang di situ", "object belongs there"),
    "person_present": ("orangnya masih ada", "person still present"),
    "camera_moved": ("kamera bergeser", "camera moved"),
    "other": ("lainnya", "other"),
    # Severities
    "critical": ("kritis", "critical"),
    "major": ("tinggi", "major"),
    "minor": ("sedang", "minor"),
    "warning": ("peringatan", "warning"),
    "info": ("info", "info"),
}

_MONTHS = {
    "id": ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def words(language: Language) -> dict[str, str]:
    index = 0 if language == "id" else 1
    return {key: pair[index] for key, pair in _WORDS.items()}


def when(value: datetime | None, language: Language, tz: ZoneInfo) -> str:
    """07 Des 2026 10:15 WIB, in the site's time zone."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    month = _MONTHS[language][local.month - 1]
    zone = local.tzname() or ""
    return f"{local.day:02d} {month} {local.year} {local:%H:%M:%S} {zone}".strip()
