"""Face boxes from upstream's YOLOv5-face TorchScript (`yoloface_v5m.pt`): input sizing, grids, NMS, rescale.

The network itself stays a TorchScript module the caller loads; only its pre/post-processing lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .crop import FaceBox

INPUT_SHORT_SIDE = 416
STRIDES = (8, 16, 32)
CONFIDENCE = 0.5
IOU_THRESHOLD = 0.45

Detector = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]
"""`model(image (1, 3, h, w) RGB in [0, 1], grids) -> (1, N, 16)` rows `[cx, cy, w, h, obj, 10 landmark
coordinates, cls]` in input pixels: the call signature of `yoloface_v5m.pt`."""


@dataclass(frozen=True)
class Detection:
    box: FaceBox
    score: float
    landmarks: tuple[tuple[float, float], ...]
    """Five `(x, y)` points: eyes, nose, mouth corners."""


def detector_size(width: int, height: int) -> tuple[int, int]:
    """`(w, h)` the detector runs at: short side to 416, both sides rounded up to multiples of 32."""
    ratio = INPUT_SHORT_SIDE / min(height, width)
    return int(width * ratio + 31) // 32 * 32, int(height * ratio + 31) // 32 * 32


def detection_grids(width: int, height: int, device: torch.device) -> list[torch.Tensor]:
    """Per stride, a `(1, 1, ny, nx, 2)` float grid of `(x, y)` cell indices."""
    grids = []
    for stride in STRIDES:
        ys, xs = torch.meshgrid(torch.arange(height // stride), torch.arange(width // stride), indexing="ij")
        grids.append(torch.stack((xs, ys), 2)[None, None].float().to(device))
    return grids


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS on `(N, 4)` xyxy boxes: indices kept, best score first (torchvision's `nms` semantics)."""
    order = scores.argsort(descending=True)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.numel():
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = torch.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = torch.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def detect_faces(model: Detector, image: torch.Tensor, device: torch.device | str = "cpu") -> list[Detection]:
    """Faces in a ComfyUI `(H, W, 3)` image in [0, 1], best score first, in image pixels.

    Upstream resizes 8-bit pixels with OpenCV's bilinear filter; this uses torch's (same sampling
    positions, rounded to 8 bits), so boxes can differ by a fraction of a pixel."""
    height, width = image.shape[:2]
    in_w, in_h = detector_size(width, height)
    pixels = (image.float() * 255).round().permute(2, 0, 1)[None]
    resized = F.interpolate(pixels, size=(in_h, in_w), mode="bilinear", align_corners=False)
    batch = (resized.round().clamp(0, 255) / 255).to(device)
    prediction = model(batch, detection_grids(in_w, in_h, torch.device(device)))[0].float().cpu()

    candidates = prediction[prediction[:, 4] > CONFIDENCE]
    scores = candidates[:, 4] * candidates[:, 15]
    candidates, scores = candidates[scores > CONFIDENCE], scores[scores > CONFIDENCE]
    centre, size = candidates[:, :2], candidates[:, 2:4]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    kept = non_max_suppression(boxes, scores, IOU_THRESHOLD)

    def to_image(x: float, y: float) -> tuple[float, float]:
        return x * width / in_w, y * height / in_h

    detections = []
    for i in kept.tolist():
        x1, y1 = to_image(*boxes[i, :2].tolist())
        x2, y2 = to_image(*boxes[i, 2:].tolist())
        points = candidates[i, 5:15].reshape(5, 2).tolist()
        detections.append(
            Detection(
                box=FaceBox(x1, y1, x2 - x1, y2 - y1),
                score=float(scores[i]),
                landmarks=tuple(to_image(x, y) for x, y in points),
            )
        )
    return detections


def largest_face(detections: list[Detection]) -> Detection | None:
    """The detection with the largest box area.

    Deliberate fix: upstream never updates its running maximum, so it returns the *last* face larger
    than the first one rather than the largest."""
    return max(detections, key=lambda d: d.box.w * d.box.h, default=None)
