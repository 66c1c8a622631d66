"""Matching detected events and view alarms to the annotations, and the scores per clip,
group and in total."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from detectors.evaluation import (
    Annotations,
    ClipSpec,
    DetectedEvent,
    EvaluationError,
    RunResult,
    Scores,
    TruthEvent,
    TruthView,
    ViewAlarm,
    detected_from_records,
    evaluate,
    format_table,
    match_events,
    match_views,
    video_frames,
    view_alarms_from,
    write_report,
)
from tests.unit.detectors.evaluation.factories import (
    FAKE_RUNS,
    det,
    fake_annotations,
    fake_run,
    record,
    truth,
    view,
)


@pytest.mark.parametrize(
    ("truths", "found", "expected"),
    [
        # (matched (truth, detected) pairs, missed truths, false detections)
        ([truth(10.0)], [det(15.0)], ([(0, 0)], [], [])),  # exactly at the tolerance
        ([truth(10.0)], [det(4.9)], ([], [0], [0])),  # just outside it
        ([truth(10.0, tolerance_s=1.0)], [det(11.5)], ([], [0], [0])),  # per-event tolerance
        ([truth(10.0)], [det(13.0), det(11.0)], ([(0, 1)], [], [0])),  # one-to-one: closer wins
        ([truth(10.0), truth(12.0)], [det(11.8)], ([(1, 0)], [0], [])),
        # Closest pairs first, so both are found although the first truth is nearer the later one.
        ([truth(10.0), truth(14.0)], [det(13.0), det(9.0)], ([(0, 1), (1, 0)], [], [])),
        ([], [det(3.0), det(40.0)], ([], [], [0, 1])),  # a negative clip: every alert is false
        ([truth(10.0)], [], ([], [0], [])),
        ([truth(10.0, where=(0, 0, 10, 10))], [det(10.0, (20, 20, 30, 30))], ([], [0], [0])),
        ([truth(10.0, where=(0, 0, 10, 10))], [det(10.0, (8, 8, 30, 30))], ([(0, 0)], [], [])),
        ([truth(10.0, where=(0, 0, 10, 10))], [det(10.0, None)], ([(0, 0)], [], [])),
        # Box in the right place but the wrong time is still wrong.
        ([truth(10.0, where=(0, 0, 10, 10))], [det(30.0, (0, 0, 10, 10))], ([], [0], [0])),
    ],
)
def test_matching(
    truths: list[TruthEvent],
    found: list[DetectedEvent],
    expected: tuple[list[tuple[int, int]], list[int], list[int]],
) -> None:
    matches, missed, false = match_events(truths, found)
    assert ([(m.truth, m.detected) for m in matches], missed, false) == expected


def test_a_box_in_detect_pixels_scales_back_to_the_video() -> None:
    event = DetectedEvent(10.0, 40.0, (10.0, 20.0, 30.0, 40.0))
    assert event.scaled(1.2).box == pytest.approx((12.0, 24.0, 36.0, 48.0))
    assert event.scaled(2.0, 0.5).box == pytest.approx((20.0, 10.0, 60.0, 20.0))
    assert DetectedEvent(1.0, 2.0).scaled(3.0).box is None


def test_a_match_carries_the_offset_and_the_notification_delay() -> None:
    (m,), _, _ = match_events([truth(10.0)], [DetectedEvent(11.5, 42.0)])
    assert m.offset_s == pytest.approx(1.5)
    assert m.delay_s == pytest.approx(32.0)


def test_only_new_records_become_detected_events_on_the_clip_clock() -> None:
    records = [
        record("new", 1000.0 + 12.0, 1000.0 + 43.0),
        record("update", 1000.0 + 12.0, 1000.0 + 43.0),
        record("end", 1000.0 + 12.0, 1000.0 + 43.0),
        record("new", 1000.0 + 50.0, 1000.0 + 81.0, event=2),
    ]
    events = detected_from_records(records, clip_start=1000.0)
    assert [(e.appeared_at, e.alerted_at) for e in events] == [(12.0, 43.0), (50.0, 81.0)]
    assert events[0].event_id == str(uuid.UUID(int=1)) and events[0].zone_id == "kerb"


@pytest.mark.parametrize(
    ("counts", "delays", "expected"),
    [
        ((3, 1, 2), [30.0, 31.0, 35.0], (0.75, 0.6, 2 / 3, 32.0, 31.0, 35.0)),
        ((2, 0, 0), [31.0, 33.0], (1.0, 1.0, 1.0, 32.0, 32.0, 33.0)),
        ((0, 0, 0), [], (None, None, None, None, None, None)),  # a quiet negative clip
        ((0, 2, 0), [], (0.0, None, 0.0, None, None, None)),  # false alarms only
        ((0, 0, 3), [], (None, 0.0, 0.0, None, None, None)),  # missed everything, said nothing
    ],
)
def test_score_arithmetic(
    counts: tuple[int, int, int], delays: list[float], expected: tuple[float | None, ...]
) -> None:
    s = Scores.of(*counts, delays)
    got = (s.precision, s.recall, s.f1, s.delay_mean, s.delay_p50, s.delay_max)
    assert got == pytest.approx(expected)


def test_scores_add_up_counts_not_ratios() -> None:
    total = Scores.combine(
        [Scores.of(1, 0, 0, [30.0]), Scores.of(0, 3, 0), Scores.of(1, 0, 1, [40.0])]
    )
    assert (total.tp, total.fp, total.fn, total.clips) == (2, 3, 1, 3)
    assert total.precision == pytest.approx(0.4) and total.recall == pytest.approx(2 / 3)
    assert total.delays == (30.0, 40.0) and total.delay_p50 == pytest.approx(35.0)
    with pytest.raises(
        ValueError, match="one delay per true positive, got tp=2 fp=0 fn=0 and 1 delays"
    ):
        Scores.of(2, 0, 0, [1.0])


def test_evaluate_scores_clips_groups_and_total(tmp_path: Path) -> None:
    report = evaluate(fake_annotations(tmp_path), fake_run, progress=False)
    per_clip = {r.clip.name: (r.scores.tp, r.scores.fp, r.scores.fn) for r in report.clips}
    assert per_clip == {
        "leave-a": (1, 0, 0),
        "leave-b": (1, 1, 1),
        "quiet": (0, 0, 0),
        "busy": (0, 1, 0),
    }
    leave, negative = report.groups["leave"], report.groups["negative"]
    assert (leave.tp, leave.fp, leave.fn, leave.clips) == (2, 1, 1, 2)
    assert (negative.tp, negative.fp, negative.fn, negative.precision, negative.recall) == (
        0,
        1,
        0,
        0.0,
        None,
    )
    t = report.total
    assert (t.tp, t.fp, t.fn, t.clips) == (2, 2, 1, 4)
    assert t.precision == pytest.approx(0.5) and t.recall == pytest.approx(2 / 3)
    assert t.f1 == pytest.approx(4 / 7)
    assert t.delays == (31.0, 32.0) and t.delay_mean == pytest.approx(31.5) and t.delay_max == 32.0


def test_a_failing_run_names_the_clip(tmp_path: Path) -> None:
    def broken(clip: ClipSpec) -> RunResult:
        if clip.name == "quiet":
            raise OSError("cannot decode frame 12")
        return fake_run(clip)

    with pytest.raises(
        EvaluationError,
        match=r"clip 'quiet' \(.*quiet\.mp4\): the run failed: cannot decode frame 12",
    ):
        evaluate(fake_annotations(tmp_path), broken, progress=False)

    def bare(clip: ClipSpec) -> Any:
        return FAKE_RUNS[clip.name]

    with pytest.raises(
        EvaluationError, match="clip 'leave-a': expected the run to return a RunResult, got list"
    ):
        evaluate(fake_annotations(tmp_path), bare, progress=False)

    def sloppy(clip: ClipSpec) -> RunResult:
        return RunResult([], [(10.0, "moved")])  # type: ignore[list-item]

    with pytest.raises(
        EvaluationError,
        match="clip 'leave-a': expected the run to return DetectedEvent and ViewAlarm items, "
        "got tuple",
    ):
        evaluate(fake_annotations(tmp_path), sloppy, progress=False)


def test_progress_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evaluate(fake_annotations(tmp_path), fake_run, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "4/4" in err


@pytest.mark.parametrize(
    ("expected", "alarms", "result"),
    [
        # ((expected, alarm) pairs, missed expected, unexpected alarms)
        ([view("moved", 25.0)], [ViewAlarm(28.0, "moved")], ([(0, 0)], [], [])),
        ([view("moved", 25.0)], [ViewAlarm(35.0, "moved")], ([(0, 0)], [], [])),  # at the edge
        ([view("moved", 25.0)], [ViewAlarm(35.5, "moved")], ([], [0], [0])),  # too late
        ([view("moved", 25.0, 2.0)], [ViewAlarm(28.0, "moved")], ([], [0], [0])),
        # The right time is not enough: a covered camera is not a moved one.
        ([view("covered", 20.0)], [ViewAlarm(22.0, "moved")], ([], [0], [0])),
        ([], [ViewAlarm(3.0, "covered")], ([], [], [0])),  # nothing happened to the camera
        ([view("covered", 20.0)], [], ([], [0], [])),
        # One alarm per change: the second one is unexpected.
        ([view("covered", 20.0)], [ViewAlarm(22.0, "covered"), ViewAlarm(21.0, "covered")],
         ([(0, 1)], [], [0])),
        ([view("covered", 20.0), view("moved", 40.0)],
         [ViewAlarm(43.0, "moved"), ViewAlarm(21.0, "covered")], ([(0, 1), (1, 0)], [], [])),
    ],
)  # fmt: skip
def test_view_alarm_matching(
    expected: list[TruthView],
    alarms: list[ViewAlarm],
    result: tuple[list[tuple[int, int]], list[int], list[int]],
) -> None:
    assert match_views(expected, alarms) == result


class Change:
    def __init__(self, at: float, condition: str, phase: str) -> None:
        self.at, self.condition, self.phase = at, condition, phase


def test_a_view_alarm_is_a_change_that_starts() -> None:
    changes = [
        Change(1025.0, "moved", "start"),
        Change(1055.0, "moved", "end"),
        Change(1070.0, "covered", "start"),
    ]
    assert view_alarms_from(changes, clip_start=1000.0) == [
        ViewAlarm(25.0, "moved"),
        ViewAlarm(70.0, "covered"),
    ]


def test_view_alarms_are_scored_per_clip_and_shown(tmp_path: Path) -> None:
    clips = (
        ClipSpec("moved", tmp_path / "m.mp4", view_changes=(view("moved", 25.0),), group="cam"),
        ClipSpec("covered", tmp_path / "c.mp4", view_changes=(view("covered", 20.0),), group="cam"),
        ClipSpec("plain", tmp_path / "p.mp4", group="street"),
    )
    runs = {
        "moved": RunResult([], [ViewAlarm(29.0, "moved")], 60.0),
        "covered": RunResult([], [], 50.0),  # missed
        "plain": RunResult([], [ViewAlarm(12.0, "covered")], 40.0),  # a false health alarm
    }
    report = evaluate(Annotations(None, clips), lambda c: runs[c.name], progress=False)
    per_clip = {
        r.clip.name: (r.scores.views_found, r.scores.views_missed, r.scores.views_unexpected)
        for r in report.clips
    }
    assert per_clip == {"moved": (1, 0, 0), "covered": (0, 1, 0), "plain": (0, 0, 1)}
    t = report.total
    assert (t.views_found, t.views_missed, t.views_unexpected, t.views_expected) == (1, 1, 1, 2)
    # A clip that only expects a camera alarm is still a negative for dumping.
    assert (t.tp, t.fp, t.fn) == (0, 0, 0) and t.negative_s == 150.0

    paths = write_report(report, tmp_path / "out")
    lines = paths["table"].read_text().splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line}
    assert rows["moved"][-2:] == ["1/1", "0"]
    assert rows["covered"][-2:] == ["0/1", "0"]
    assert rows["plain"][-2:] == ["0/0", "1"]
    assert rows["TOTAL"][-2:] == ["1/2", "1"]
    summary = json.loads(paths["json"].read_text())
    assert summary["total"]["view_alarms"] == {
        "expected": 2, "found": 1, "missed": 1, "unexpected": 1,
    }  # fmt: skip
    moved = next(c for c in summary["clips"] if c["clip"] == "moved")
    assert moved["view_alarms"]["matched"] == [
        {"condition": "moved", "expected_at": 25.0, "alarm_at": 29.0, "offset_s": 4.0}
    ]
    assert moved["negative"] is True
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")


def test_the_box_iou_of_every_event_found_is_reported(tmp_path: Path) -> None:
    where = (100.0, 100.0, 140.0, 140.0)
    clips = (
        ClipSpec("exact", tmp_path / "a.mp4", (truth(10.0, where=where),), group="g"),
        # Half the object boxed: IoU 0.5.
        ClipSpec("half", tmp_path / "b.mp4", (truth(10.0, where=where),), group="g"),
        # No annotated box: found by time alone, no IoU.
        ClipSpec("loose", tmp_path / "c.mp4", (truth(10.0),), group="h"),
    )
    runs = {
        "exact": RunResult([det(11.0, where)], duration_s=60.0),
        "half": RunResult([det(11.0, (100.0, 100.0, 120.0, 140.0))], duration_s=60.0),
        "loose": RunResult([det(11.0, (0.0, 0.0, 5.0, 5.0))], duration_s=60.0),
    }
    report = evaluate(Annotations(None, clips), lambda c: runs[c.name], progress=False)
    ious = {r.clip.name: r.scores.iou_mean for r in report.clips}
    assert ious == {"exact": pytest.approx(1.0), "half": pytest.approx(0.5), "loose": None}
    assert report.total.iou_mean == pytest.approx(0.75)
    assert report.groups["h"].iou_mean is None

    paths = write_report(report, tmp_path / "out")
    head, *rows = (line.split() for line in paths["table"].read_text().splitlines())
    assert head[-3:] == ["IoU", "views", "extra"]
    by_name = {r[0]: r for r in rows if r}
    assert [by_name[n][-3] for n in ("exact", "half", "loose", "TOTAL")] == [
        "1.00", "0.50", "-", "0.75",
    ]  # fmt: skip
    summary = json.loads(paths["json"].read_text())
    assert summary["total"]["box_iou"]["mean"] == pytest.approx(0.75)
    half = next(c for c in summary["clips"] if c["clip"] == "half")
    assert half["matched"][0]["box_iou"] == pytest.approx(0.5)
    assert half["matched"][0]["where"] == list(where)


def test_false_alarms_per_camera_hour_count_only_clips_without_dumping(tmp_path: Path) -> None:
    clips = (
        ClipSpec("quiet", tmp_path / "q.mp4"),
        ClipSpec("busy", tmp_path / "b.mp4"),
        # A false alarm beside a real event is a false positive, not a false alarm per hour.
        ClipSpec("drop", tmp_path / "d.mp4", (truth(10.0),)),
    )
    runs = {
        "quiet": RunResult([], duration_s=600.0),
        "busy": RunResult([det(100.0), det(400.0), det(800.0)], duration_s=1200.0),
        "drop": RunResult([det(10.0), det(300.0)], duration_s=3600.0),
    }
    report = evaluate(Annotations(None, clips), lambda c: runs[c.name], progress=False)
    t = report.total
    assert (t.fp, t.negative_fp, t.negative_s) == (4, 3, 1800.0)
    assert t.false_alarms_per_hour == pytest.approx(6.0)  # 3 alarms in half an hour
    by_clip = {r.clip.name: r.scores.false_alarms_per_hour for r in report.clips}
    assert by_clip == {"quiet": 0.0, "busy": pytest.approx(9.0), "drop": None}
    table = format_table(report)
    assert table.endswith(
        "false alarms per camera-hour: 6.0 (3 in 0.50 h of clips without dumping)\n"
    )


def test_the_length_of_a_negative_comes_from_the_video_when_the_run_does_not_say(
    small_set: Path,
) -> None:
    walk = small_set.parent / "walk.mp4"
    clip = ClipSpec("walk", walk)
    report = evaluate(Annotations(None, (clip,)), lambda c: RunResult([det(5.0)]), progress=False)
    frames = sum(1 for _ in video_frames(walk))
    assert report.total.negative_s == pytest.approx(frames / 5.0)
    assert report.total.false_alarms_per_hour == pytest.approx(3600.0 / (frames / 5.0))
