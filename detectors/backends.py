"""Detector backends. Only this module touches ultralytics.

The model always comes from a local path in the settings: weights are never downloaded at
run time (the machines that run Pantau often have no route to the internet).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from detectors.detections import Detections
from pantau.settings import UltralyticsDetector

log = logging.getLogger(__name__)


class DetectorError(RuntimeError):
    pass


class Backend(Protocol):
    name: str
    names: Mapping[int, str]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


class UltralyticsBackend:
    """YOLO through ultralytics: a `.pt` checkpoint or an exported folder (e.g. OpenVINO)."""

    def __init__(self, config: UltralyticsDetector) -> None:
        if not config.model.exists():
            raise DetectorError(
                f"detector model {config.model} does not exist "
                "(weights are never downloaded at run time; check detector.model)"
            )
        # ultralytics would otherwise probe the internet and try to pip-install missing extras.
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "0")
        os.environ.setdefault("YOLO_VERBOSE", "0")
        from ultralytics import YOLO

        self.config = config
        self.name = config.model.name
        started = time.monotonic()
        self._model = YOLO(str(config.model), task="detect")
        self.names: Mapping[int, str] = dict(self._model.names)
        # The first inference compiles kernels and allocates; do it before real frames arrive.
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), dtype=np.uint8)])
        log.info(
            "detector %s ready in %.1f s (imgsz %d, device %s)",
            self.name,
            time.monotonic() - started,
            config.imgsz,
            config.device,
        )

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        results = self._model.predict(
            list(images),
            imgsz=self.config.imgsz,
            conf=self.config.confidence,
            iou=self.config.iou,
            device=self.config.device,
            verbose=False,
        )
        return [Detections.from_ultralytics(r) for r in results]


def load_backend(config: UltralyticsDetector) -> Backend:
    if config.type == "ultralytics":
        return UltralyticsBackend(config)
    raise DetectorError(f"unknown detector type {config.type!r}")
