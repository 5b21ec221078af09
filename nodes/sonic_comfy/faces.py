"""The face detector Preprocess uses, and the face it keeps.

Upstream's YOLOv5-face TorchScript (`yoloface_v5m.pt`) when a Sonic folder has it, otherwise OpenCV's Haar
cascade; each is built once per process. The largest face wins; finding none is an error unless the caller
accepts animating the whole image.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..sonic import Detection, FaceBox, detect_faces, largest_face
from ..sonic.haar_detect import HaarFaces

log = logging.getLogger("sonic")

FaceDetector = Callable[[torch.Tensor], list[Detection]]
"""`detector(image (H, W, 3) in [0, 1]) -> detections`; has a `name` for the log."""


class NoFaceFound(ValueError):
    """The portrait has no face the detector can see."""


class YoloFaces:
    name = "YOLOv5-face TorchScript"

    def __init__(self, path: Path, device: torch.device | str) -> None:
        self.device = torch.device(device)
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format upstream ships
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=self.device).eval()

    def __call__(self, image: torch.Tensor) -> list[Detection]:
        return detect_faces(self.model, image, self.device)


_DETECTORS: dict[tuple[str, str], FaceDetector] = {}


def face_detector(yolo_path: Path | None, device: torch.device | str) -> FaceDetector:
    """The YOLO detector at `yolo_path` if there is one, else the Haar cascade; logs which one runs."""
    key = (str(yolo_path), str(device))
    if key not in _DETECTORS:
        _DETECTORS[key] = YoloFaces(yolo_path, device) if yolo_path is not None else HaarFaces()
    detector = _DETECTORS[key]
    log.info("[sonic] face detection: %s%s", detector.name, f" ({yolo_path})" if yolo_path else "")
    return detector


def forget_detectors() -> None:
    _DETECTORS.clear()


def pick_face(detections: list[Detection], whole_image_if_none: bool) -> FaceBox | None:
    """The largest face; None (meaning: the whole image) when there is none and that is allowed."""
    best = largest_face(detections)
    if best is not None:
        return best.box
    if whole_image_if_none:
        log.warning("[sonic] no face found: animating the whole image")
        return None
    raise NoFaceFound(
        "Sonic found no face in the image. Use a portrait with a clearly visible, roughly frontal face, "
        "or turn on use_whole_image_if_no_face to animate the whole image."
    )
