"""Annotation files: loading, `${VAR}` in video paths, and mistakes that name the clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detectors.evaluation import (
    DEFAULT_SHARED_DATA,
    DEFAULT_TOLERANCE_S,
    AnnotationError,
    TruthEvent,
    TruthView,
    annotations_from_mapping,
    load_annotations,
)
from tests.unit.detectors.evaluation.factories import (
    INTEL,
    STREET,
    clip_entry,
    load,
)


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
    ("video", "environ", "expected"),
    [
        # As in the settings file: a variable set to nothing is set; its default is not used.
        ("clips/${DAY:-monday}/a.mp4", {"DAY": ""}, "clips/a.mp4"),
        ("clips/${DAY:-monday}/a.mp4", {}, "clips/monday/a.mp4"),
        # An explicit default beats the shared data fallback.
        ("${PANTAU_SHARED_DATA:-data}/x.mp4", {}, "data/x.mp4"),
        ("${PANTAU_SHARED_DATA}x.mp4", {"PANTAU_SHARED_DATA": ""}, "x.mp4"),
    ],
)
def test_video_variables_follow_the_settings_rules(
    tmp_path: Path, video: str, environ: dict[str, str], expected: str
) -> None:
    (clip,) = load(tmp_path, [clip_entry(video=video)], environ, check_videos=False).clips
    assert clip.video == tmp_path / expected


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


def test_annotations_can_come_from_a_mapping(tmp_path: Path) -> None:
    data = {"clips": [clip_entry(video="/elsewhere/a.mp4")]}
    (clip,) = annotations_from_mapping(data, tmp_path, check_videos=False).clips
    assert clip.video == Path("/elsewhere/a.mp4")


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
