"""Face boxes from OpenCV's frontal-face Haar cascade, the detector used when `yoloface_v5m.pt` is absent.

The cascade file ships inside the `opencv-python-headless` wheel (4.x), so nothing is downloaded.
Boxes come back as `Detection`s like the YOLO path's, without landmarks (Sonic uses only the box).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .crop import FaceBox
from .face_detect import Detection

CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class HaarSettings:
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_fraction: float = 1 / 16
    """Smallest face side, as a fraction of the image's short side."""


class HaarFaces:
    """`detector(image (H, W, 3) in [0, 1]) -> [Detection]`, most confident first."""

    name = "OpenCV Haar cascade"

    def __init__(self, settings: HaarSettings | None = None) -> None:
        try:
            import cv2
        except ImportError:
            raise RuntimeError(
                "no face detector: put yoloface_v5m.pt in models/sonic, or pip install 'opencv-python-headless<5'"
            ) from None
        path = Path(cv2.data.haarcascades) / CASCADE
        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV has no {CASCADE} at {path} (OpenCV 5 dropped the cascades: use 4.x)")
        self.settings = settings or HaarSettings()

    def __call__(self, image: torch.Tensor) -> list[Detection]:
        cv2, s = self._cv2, self.settings
        pixels = (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY))
        side = max(int(min(gray.shape) * s.min_face_fraction), 16)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, s.scale_factor, s.min_neighbors, minSize=(side, side), outputRejectLevels=True
        )
        found = [
            Detection(box=FaceBox(float(x), float(y), float(w), float(h)), score=float(weight), landmarks=())
            for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True)
        ]
        return sorted(found, key=lambda d: d.score, reverse=True)
