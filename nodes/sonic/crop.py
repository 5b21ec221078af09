"""Portrait geometry of Sonic: the square face crop, the face-mask rectangle and the ×64 working size.

Pure Python float arithmetic in upstream's operation order; `round` is Python's banker's rounding, as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels, as the detector reports it: top-left corner, width, height."""

    x: float
    y: float
    w: float
    h: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.x + self.w, self.y + self.h


def crop_box(face: FaceBox, expand_ratio: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Square crop `(x1, y1, x2, y2)` around `face`: expand by `expand_ratio` of the face size, clip to the
    image, keep the shorter side and slide the square towards the face centre (upstream `process_bbox`)."""
    x1, y1, x2, y2 = face.xyxy
    bw, bh = x2 - x1, y2 - y1
    ex1 = max(x1 - expand_ratio * bw, 0)
    ey1 = max(y1 - expand_ratio * bh, 0)
    ex2 = min(x2 + expand_ratio * bw, width)
    ey2 = min(y2 + expand_ratio * bh, height)

    h, w = ey2 - ey1, ex2 - ex1
    half_side = min(h, w) / 2
    shift = abs((h - w) / 2)
    shift_y = shift_x = 0
    if w < h:
        centre, face_centre = (ey1 + ey2) / 2, (y1 + y2) / 2
        shift_y = min(shift, abs(face_centre - centre)) * (1 if face_centre > centre else -1)
    else:
        centre, face_centre = (ex1 + ex2) / 2, (x1 + x2) / 2
        shift_x = min(shift, abs(face_centre - centre)) * (1 if face_centre > centre else -1)
    cy = (ey1 + ey2) / 2 + shift_y
    cx = (ex1 + ex2) / 2 + shift_x

    sx1, sy1, sx2, sy2 = cx - half_side, cy - half_side, cx + half_side, cy + half_side
    side = min(sx2 - sx1, sy2 - sy1)
    mid_x, mid_y = (sx1 + sx2) / 2, (sy1 + sy2) / 2
    return (
        round(mid_x - side / 2),
        round(mid_y - side / 2),
        round(mid_x + side / 2),
        round(mid_y + side / 2),
    )


def face_mask_rect(face: FaceBox, area: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Half-open rectangle `(x0, y0, x1, y1)` of the face mask: the face box scaled by `area` about its
    (floor-divided) centre, clipped to the image, truncated to ints."""
    x1, y1, x2, y2 = face.xyxy
    ww, hh = (x2 - x1) * area, (y2 - y1) * area
    cx, cy = (x2 + x1) // 2, (y2 + y1) // 2
    left = max(cx - ww // 2, 0)
    top = max(cy - hh // 2, 0)
    right = min(cx + ww // 2, width)
    bottom = min(cy + hh // 2, height)
    return int(left), int(top), int(right), int(bottom)


def working_size(width: int, height: int, min_resolution: int) -> tuple[int, int]:
    """`(width, height)` Sonic renders at: short side scaled to about `min_resolution`, both sides multiples of 64."""
    scale = min_resolution / min(width, height)
    return round(width * scale / 64) * 64, round(height * scale / 64) * 64
