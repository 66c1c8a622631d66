"""The evaluation harness: annotation files, event matching, scores, reports, and a real
run of the pure dumping pipeline over a small synthetic set."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from detectors.dumping import DumpingRecord, Phase
from detectors.evaluate import (
    DEFAULT_SHARED_DATA,
    DEFAULT_TOLERANCE_S,
    AnnotationError,
    Annotations,
    ClipSpec,
    DetectedEvent,
    EvaluationError,
    RunResult,
    Scores,
    SyntheticClip,
    TruthEvent,
    TruthView,
    ViewAlarm,
    annotations_from_mapping,
    default_synthetic_clips,
    detected_from_records,
    evaluate,
    format_table,
    load_annotations,
    main,
    make_synthetic_set,
    match_events,
    match_views,
    truth_box_runner,
    video_frames,
    view_alarms_from,
    write_report,
)
from detectors.synthetic import SceneSpec
from tests.conftest import REPO

INTEL = REPO / "configs" / "evaluation" / "intel.yaml"
STREET = REPO / "configs" / "evaluation" / "street.yaml"


# --------------------------------------------------------------------------- helpers


def clip_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "street-1",
        "video": "clip.mp4",
        "camera": {
            "zones": [
                {"id": "kerb", "kind": "watch", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]},
                {"id": "bin", "kind": "fixture", "polygon": [[0.8, 0.6], [0.9, 0.6], [0.9, 0.9]]},
            ]
        },
        "events": [{"drop_at": 12.5, "where": [10, 20, 60, 80], "note": "bag by the kerb"}],
    }
    entry.update(overrides)
    return entry


def load(
    tmp_path: Path,
    clips: Sequence[dict[str, Any]],
    environ: dict[str, str] | None = None,
    *,
    touch: Sequence[str] = ("clip.mp4",),
    check_videos: bool = True,
) -> Annotations:
    for name in touch:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "annotations.yaml"
    path.write_text(yaml.safe_dump({"clips": list(clips)}), encoding="utf-8")
    return load_annotations(path, environ, check_videos=check_videos)


def det(appeared_at: float, box: tuple[float, float, float, float] | None = None) -> DetectedEvent:
    return DetectedEvent(appeared_at=appeared_at, alerted_at=appeared_at + 30.0, box=box)


def truth(
    drop_at: float, tolerance_s: float = 5.0, where: tuple[float, float, float, float] | None = None
) -> TruthEvent:
    return TruthEvent(drop_at=drop_at, tolerance_s=tolerance_s, where=where)


def record(phase: Phase, appeared_at: float, alerted_at: float, event: int = 1) -> DumpingRecord:
    return DumpingRecord(
        event_id=uuid.UUID(int=event),
        phase=phase,
        version=0 if phase == "new" else 1,
        state="alerted",
        camera_id="cam",
        zone_id="kerb",
        candidate_id=event,
        at=alerted_at,
        appeared_at=appeared_at,
        owner_left_at=None,
        alerted_at=alerted_at,
        ended_at=None,
        box=(1.0, 2.0, 3.0, 4.0),
        class_id=None,
        class_confidence=0.0,
        owner_track_id=None,
        owner_class_id=None,
        owner_box=None,
        owner_seen_at=None,
        confidence=0.7,
        before_at=appeared_at - 3.0,
    )


# --------------------------------------------------------------------------- loading


def test_a_valid_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    negative = clip_entry(name="quiet", video="sub/quiet.mp4", events=[], dwell_s=10)
    annotations = load(tmp_path, [clip_entry(), negative], touch=["clip.mp4", "sub/quiet.mp4"])
    first, second = annotations.clips
    assert first.video == tmp_path / "clip.mp4"
    assert first.events == (
        TruthEvent(12.5, DEFAULT_TOLERANCE_S, (10, 20, 60, 80), "bag by the kerb"),
    )
    assert first.camera == "street-1"  # no camera id: the clip's name
    assert second.video == tmp_path / "sub" / "quiet.mp4"
    assert second.events == ()


def test_the_dwell_override_applies_to_watch_zones_and_the_whole_frame(tmp_path: Path) -> None:
    no_zones = clip_entry(name="open", camera={"id": "cam-2"}, dwell_s=8)
    plain, overridden, open_view = load(
        tmp_path, [clip_entry(), clip_entry(name="short", dwell_s=8), no_zones]
    ).clips
    assert [z.dwell_s for z in plain.camera_zones().watch] == [30.0]
    assert [z.dwell_s for z in overridden.camera_zones().watch] == [8.0]
    (whole,) = open_view.camera_zones().watch
    assert whole.id is None and whole.dwell_s == 8.0
    assert open_view.camera_zones().camera_id == "cam-2"


def test_video_paths_come_from_the_environment_passed_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    entry = clip_entry(video="${PANTAU_SHARED_DATA}/video/x.mp4")
    (clip,) = load(
        tmp_path, [entry], {"PANTAU_SHARED_DATA": str(data)}, touch=["data/video/x.mp4"]
    ).clips
    assert clip.video == data / "video" / "x.mp4"
    # Not set: the shared data folder beside the repository.
    (clip,) = load(tmp_path, [entry], {}, check_videos=False).clips
    assert clip.video == DEFAULT_SHARED_DATA / "video" / "x.mp4"
    (clip,) = load(tmp_path, [clip_entry(video="${CLIPS:-clips}/a.mp4")], check_videos=False).clips
    assert clip.video == tmp_path / "clips" / "a.mp4"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"video": "gone.mp4"},
            r"clip 'street-1': expected a video file at .*gone\.mp4.*got nothing there",
        ),
        (
            {"video": "${NOPE}/a.mp4"},
            r"clip 'street-1': video '\$\{NOPE\}/a.mp4' refers to \$\{NOPE\}",
        ),
        (
            {
                "camera": {
                    "zones": [{"id": "k", "kind": "wach", "polygon": [[0, 0], [1, 0], [1, 1]]}]
                }
            },
            r"clip 'street-1' \(clips\[0\]\): camera\.zones\[0\]\.kind: expected .*'watch'.*got 'wach'",
        ),
        (
            {"camera": {"zones": [{"id": "k", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]}},
            r"camera\.zones\[0\]\.polygon: corners are fractions of the frame \(0\.\.1\), got \(1\.5, 0",
        ),
        (
            {"camera": {"zones": [{"id": "k", "polygon": [[0, 0], [1, 0]]}]}},
            r"camera\.zones\[0\]\.polygon: expected at least 3 items",
        ),
        (
            {"camera": {"zones": [{"id": "k", "polygon": [[0, 0], [1, 0], [1, 1]]}] * 2}},
            r"clip 'street-1': camera street-1: zone id 'k' is used twice",
        ),
        (
            {"events": [{"drop_at": 3, "tolerence_s": 2}]},
            r"events\[0\]\.tolerence_s: expected no such key, got 2",
        ),
        (
            {"events": [{"drop_at": 3, "where": [50, 0, 10, 10]}]},
            r"events\[0\]\.where: expected a box \[x1, y1, x2, y2\] in pixels with x2 > x1 and y2 > y1, got \[50, 0, 10, 10\]",
        ),
        (
            {"events": [{"drop_at": -1}]},
            r"events\[0\]\.drop_at: expected greater than or equal to 0, got -1",
        ),
        ({"events": None}, r"events: expected a valid tuple, got None"),
        ({"dwell_s": 0}, r"dwell_s: expected greater than 0, got 0"),
        (
            {"name": "Street 1"},
            r"clip 'Street 1' \(clips\[0\]\): name: expected match pattern",
        ),
    ],
)
def test_mistakes_are_errors_that_name_the_clip(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(AnnotationError, match=message):
        load(tmp_path, [clip_entry(**change)])


def test_a_clip_without_events_is_an_error_not_a_negative(tmp_path: Path) -> None:
    entry = clip_entry()
    del entry["events"]
    with pytest.raises(
        AnnotationError, match=r"clip 'street-1' \(clips\[0\]\): events: expected a value, got none"
    ):
        load(tmp_path, [entry])


def test_file_level_mistakes(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="expected unique clip names, got \\['street-1'\\]"):
        load(tmp_path, [clip_entry(), clip_entry()])
    with pytest.raises(AnnotationError, match="clips: expected at least 1 item"):
        load(tmp_path, [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("clips: [\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"bad\.yaml: expected YAML"):
        load_annotations(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match="expected a mapping with `clips`, got list"):
        load_annotations(bad)
    with pytest.raises(AnnotationError, match=r"missing\.yaml: cannot read it"):
        load_annotations(tmp_path / "missing.yaml")


def test_the_intel_annotations_load_and_fit_their_videos(tmp_path: Path) -> None:
    annotations = load_annotations(INTEL, {"PANTAU_SHARED_DATA": str(tmp_path)}, check_videos=False)
    clips = {c.name: c for c in annotations.clips}
    assert set(clips) == {"one-by-one", "bottles"}
    assert (
        clips["one-by-one"].video
        == tmp_path / "video/intel-sample-videos/one-by-one-person-detection.mp4"
    )
    assert clips["one-by-one"].events == ()  # every visitor takes their things along
    assert [e.drop_at for e in clips["bottles"].events] == [23.0, 28.0]
    for clip, (width, height) in (
        (clips["one-by-one"], (768, 432)),
        (clips["bottles"], (640, 360)),
    ):
        zones = clip.camera_zones()
        assert zones.of_kind("watch") and zones.of_kind("fixture", "ignore")
        for event in clip.events:
            assert event.where is not None and event.note
            x1, y1, x2, y2 = event.where
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            # The object stands inside a watch zone, clear of the ignored parts.
            (zone,) = zones.watch_zone_of([event.where], width, height)
            assert zone is not None and zone.kind == "watch"


# --------------------------------------------------------------------------- matching


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


# --------------------------------------------------------------------------- scores


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


# --------------------------------------------------------------------------- evaluate and report


def fake_annotations(tmp_path: Path) -> Annotations:
    def spec(name: str, group: str, *drops: float) -> ClipSpec:
        return ClipSpec(name, tmp_path / f"{name}.mp4", tuple(truth(d) for d in drops), group=group)

    return Annotations(
        None,
        (
            spec("leave-a", "leave", 10.0),
            spec("leave-b", "leave", 20.0, 60.0),
            spec("quiet", "negative"),
            spec("busy", "negative"),
        ),
    )


FAKE_RUNS: dict[str, list[DetectedEvent]] = {
    "leave-a": [DetectedEvent(10.5, 41.0)],
    "leave-b": [DetectedEvent(19.0, 52.0), DetectedEvent(90.0, 121.0)],
    "quiet": [],
    "busy": [DetectedEvent(5.0, 35.0)],
}
# Half an hour of video each: the two negatives make one camera-hour.
FAKE_DURATION_S = 1800.0


def fake_run(clip: ClipSpec) -> RunResult:
    return RunResult(FAKE_RUNS[clip.name], duration_s=FAKE_DURATION_S)


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


def test_the_table_json_and_plot_are_written(tmp_path: Path) -> None:
    report = evaluate(fake_annotations(tmp_path), fake_run, progress=False)
    paths = write_report(report, tmp_path / "out")
    table = paths["table"].read_text(encoding="utf-8")
    assert table == format_table(report)
    lines = [line for line in table.splitlines() if line and not line.startswith("-")]
    assert len({len(line) for line in lines[:-1]}) == 1, "columns are aligned"
    header, *rows = lines
    assert header.split()[:4] == ["clip", "group", "truth", "found"]
    table_rows, footer = rows[:-1], rows[-1]
    assert rows[1].split() == [
        "leave-b",
        "leave",
        "2",
        "2",
        "1",
        "1",
        "1",
        "0.50",
        "0.50",
        "0.50",
        "32.0",
        "32.0",
        "32.0",
        "-",
        "0/0",
        "0",
    ]
    assert rows[2].split()[4:] == ["0", "0", "0", "-", "-", "-", "-", "-", "-", "-", "0/0", "0"]
    assert table_rows[-1].split()[:5] == ["TOTAL", "4", "clips", "3", "4"]
    # One false alarm in the two negatives' hour of video.
    assert footer == "false alarms per camera-hour: 1.0 (1 in 1.00 h of clips without dumping)"

    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert summary["total"]["precision"] == 0.5 and summary["total"]["delay_s"]["p50"] == 31.5
    assert summary["total"]["false_alarms_per_camera_hour"] == 1.0
    assert summary["total"]["negative_hours"] == 1.0
    assert summary["groups"]["leave"]["false_alarms_per_camera_hour"] is None
    assert summary["groups"]["negative"]["recall"] is None
    busy = next(c for c in summary["clips"] if c["clip"] == "busy")
    assert busy["false_alarms"] == [
        {"appeared_at": 5.0, "alerted_at": 35.0, "box": None, "event_id": None}
    ]
    leave_b = next(c for c in summary["clips"] if c["clip"] == "leave-b")
    assert [m["drop_at"] for m in leave_b["missed"]] == [60.0]

    png = paths["plot"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


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


# --------------------------------------------------------------------------- synthetic, end to end

W, H = 320, 180
DWELL_S = 10.0
SMALL_SET = (
    SyntheticClip(
        "leave", SceneSpec("drop_and_leave", width=W, height=H, duration_s=22.0), "bag left"
    ),
    SyntheticClip(
        "pickup",
        SceneSpec("drop_and_pickup", width=W, height=H, away_s=6.0, lighting="cloud", seed=1),
        "bag taken back after 6 s",
    ),
    SyntheticClip(
        "walk", SceneSpec("walk_through", width=W, height=H, seed=2), "bag carried through"
    ),
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_set(
        tmp_path_factory.mktemp("synthetic"), SMALL_SET, dwell_s=DWELL_S, progress=False
    )


def test_the_synthetic_set_is_annotated_from_its_ground_truth(small_set: Path) -> None:
    annotations = load_annotations(small_set)
    clips = {c.name: c for c in annotations.clips}
    assert set(clips) == {"leave", "pickup", "walk"}
    for clip in clips.values():
        assert clip.video.is_file() and clip.video.with_suffix(".yaml").is_file()
        assert clip.dwell_s == DWELL_S
    (event,) = clips["leave"].events
    truth_file = yaml.safe_load(
        clips["leave"].video.with_suffix(".yaml").read_text(encoding="utf-8")
    )
    assert event.drop_at == pytest.approx(truth_file["drop_at"], abs=1e-3)
    assert event.where == pytest.approx(truth_file["object_box"], abs=0.1)
    assert clips["pickup"].events == () and clips["walk"].events == ()
    assert clips["leave"].set_name == "drop_and_leave"
    assert {z.id for z in clips["leave"].zones} == {"pavement", "pole", "bin"}


def test_the_pure_pipeline_finds_exactly_the_annotated_dumping(
    small_set: Path, tmp_path: Path
) -> None:
    report = evaluate(load_annotations(small_set), truth_box_runner(), progress=False)
    t = report.total
    assert (t.tp, t.fp, t.fn) == (1, 0, 0)
    assert t.precision == 1.0 and t.recall == 1.0 and t.f1 == 1.0
    # Told once the bag lay unattended for the dwell time, within a couple of seconds.
    assert t.delay_max is not None and DWELL_S <= t.delay_max <= DWELL_S + 3.0
    # The whole bag boxed, not a part of it.
    assert t.iou_mean is not None and t.iou_mean >= 0.5
    assert t.false_alarms_per_hour == 0.0 and t.negative_s > 0
    paths = write_report(report, tmp_path)
    assert "TOTAL" in paths["table"].read_text(encoding="utf-8")


def test_the_stand_in_runner_needs_the_ground_truth_beside_the_video(tmp_path: Path) -> None:
    video = tmp_path / "real.mp4"
    video.write_bytes(b"")
    with pytest.raises(
        EvaluationError, match=r"clip 'real': expected the synthetic ground truth at .*real\.yaml"
    ):
        truth_box_runner()(ClipSpec("real", video))


def test_video_frames_are_sampled_by_time(small_set: Path) -> None:
    video = small_set.parent / "walk.mp4"
    every = list(video_frames(video))
    half = list(video_frames(video, fps=2.5))
    assert [t for _, t, _ in every[:4]] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert [i for i, _, _ in half[:4]] == [0, 2, 4, 6]
    assert every[0][2].shape == (H, W, 3) and every[0][2].dtype == np.uint8


# --------------------------------------------------------------------------- entry point


def test_main_checks_a_file_and_reports_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"clips": [clip_entry()]}), encoding="utf-8")
    assert main(["check", str(good)]) == 0
    assert "street-1: 1 events" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"clips": [clip_entry(video="nope.mp4")]}), encoding="utf-8")
    assert main(["check", str(bad)]) == 2
    assert "clip 'street-1': expected a video file" in capsys.readouterr().err


def test_annotations_can_come_from_a_mapping(tmp_path: Path) -> None:
    data = {"clips": [clip_entry(video="/elsewhere/a.mp4")]}
    (clip,) = annotations_from_mapping(data, tmp_path, check_videos=False).clips
    assert clip.video == Path("/elsewhere/a.mp4")


# --------------------------------------------------------------------------- camera view alarms


def view(condition: str, at: float, tolerance_s: float = 10.0) -> TruthView:
    return TruthView(condition, at, tolerance_s)


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


def test_view_changes_are_annotated_and_checked(tmp_path: Path) -> None:
    entry = clip_entry(
        events=[], view_changes=[{"condition": "covered", "at": 20.0, "note": "a hand"}]
    )
    (clip,) = load(tmp_path, [entry]).clips
    assert clip.events == ()
    assert clip.view_changes == (TruthView("covered", 20.0, 10.0, "a hand"),)
    with pytest.raises(
        AnnotationError,
        match=r"clip 'street-1' \(clips\[0\]\): view_changes\[0\]\.condition: expected "
        r"'moved', 'covered' or 'blurred', got 'turned'",
    ):
        load(tmp_path, [clip_entry(view_changes=[{"condition": "turned", "at": 3.0}])])


# --------------------------------------------------------------------------- box IoU


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


# --------------------------------------------------------------------------- false alarms per hour


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


# --------------------------------------------------------------------------- clip sets


def test_the_street_negatives_load_and_watch_the_whole_frame(tmp_path: Path) -> None:
    annotations = load_annotations(
        STREET, {"PANTAU_SHARED_DATA": str(tmp_path)}, check_videos=False
    )
    assert len(annotations.clips) >= 2
    videos = {c.video.name for c in annotations.clips}
    assert {"car-detection.mp4", "person-bicycle-car-detection.gif"} <= videos
    for clip in annotations.clips:
        assert clip.events == () and clip.view_changes == ()
        assert clip.video.parent == tmp_path / "video" / "intel-sample-videos"
        assert clip.zones == ()
        (whole,) = clip.camera_zones().watch
        assert whole.id is None  # no zones: the whole frame is watched
        assert clip.camera != clip.name  # a camera id of its own


def test_the_standard_synthetic_set_has_the_camera_and_night_scenes() -> None:
    clips = {c.name: c for c in default_synthetic_clips()}
    assert {"camera-moved", "camera-covered", "night-drop"} <= set(clips)
    for clip in clips.values():
        spec = clip.spec
        assert (spec.width, spec.height, spec.fps) == (640, 360, 5.0)
    moved, covered, night = (
        clips[n].spec for n in ("camera-moved", "camera-covered", "night-drop")
    )
    assert moved.move_at_s is not None and covered.cover_at_s is not None
    assert night.lighting == "night" and night.scenario == "drop_and_leave"


def test_synthetic_annotations_expect_the_view_changes(tmp_path: Path) -> None:
    covered = SyntheticClip(
        "covered",
        SceneSpec("passers_by", width=W, height=H, duration_s=12.0, cover_at_s=4.0, cover_s=5.0),
        "lens covered",
    )
    annotations = load_annotations(make_synthetic_set(tmp_path, [covered], progress=False))
    (clip,) = annotations.clips
    assert clip.events == ()
    assert clip.view_changes == (TruthView("covered", 4.0, 10.0, "camera covered until 9.0 s"),)
