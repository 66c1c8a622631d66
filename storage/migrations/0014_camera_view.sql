-- The detector's word on each camera's picture (cameras.view.v1): the view moved, or the
-- picture was covered or blurred, and when it was usable again. Few rows (a camera's view
-- rarely changes), kept as long as the alarms they explain.

CREATE TABLE camera_view_changes (
    time               timestamptz      NOT NULL,
    id                 uuid             NOT NULL,
    camera_id          text             NOT NULL,
    condition          text             NOT NULL CHECK (condition IN ('moved', 'covered', 'blurred')),
    phase              text             NOT NULL CHECK (phase IN ('start', 'end')),
    changed_frac       double precision NOT NULL,
    brightness_spread  double precision NOT NULL,
    sharpness_ratio    double precision NOT NULL,
    relearn_s          double precision NOT NULL DEFAULT 0,
    stored_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (id, time)
);
COMMENT ON TABLE camera_view_changes IS 'The detector''s judgement of a camera''s picture: moved (turned onto another view), covered (near-uniform) or blurred (lost its detail), start and end. A moved view raises the camera_view_changed alarm, a covered or blurred one camera_tampered.';
COMMENT ON COLUMN camera_view_changes.time IS 'capture time of the frame the detector judged';
COMMENT ON COLUMN camera_view_changes.changed_frac IS 'share of the scene''s outline no longer where it was (0..1)';
COMMENT ON COLUMN camera_view_changes.brightness_spread IS 'standard deviation of the picture''s grey levels (0..255): near 0 for a covered lens';
COMMENT ON COLUMN camera_view_changes.sharpness_ratio IS 'detail in the picture relative to the camera''s usual (1: as usual)';
COMMENT ON COLUMN camera_view_changes.relearn_s IS 'for moved: seconds the scene is relearnt, without dumping events, before detection resumes';
SELECT pantau_time_series('camera_view_changes', 'time', '1 month', 'incident');
CREATE INDEX camera_view_changes_camera_time ON camera_view_changes (camera_id, time DESC);

-- The sink appends; the wall, the analysts and the console read.
GRANT SELECT, INSERT ON camera_view_changes TO pantau_writer;
GRANT SELECT ON camera_view_changes TO pantau_grafana, pantau_analyst, pantau_console;
