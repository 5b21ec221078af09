"""Detector post-processing around a stand-in for the YOLOv5-face TorchScript (same call signature)."""

from __future__ import annotations

import pytest
import torch

from nodes.sonic.crop import FaceBox
from nodes.sonic.face_detect import (
    STRIDES,
    Detection,
    detect_faces,
    detection_grids,
    detector_size,
    largest_face,
    non_max_suppression,
)


def row(cx: float, cy: float, w: float, h: float, obj: float, cls: float = 1.0) -> list[float]:
    landmarks = [cx - 10, cy - 10, cx + 10, cy - 10, cx, cy, cx - 8, cy + 10, cx + 8, cy + 10]
    return [cx, cy, w, h, obj, *landmarks, cls]


class StubDetector:
    """Returns fixed predictions in detector-input pixels and records what it was called with."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = torch.tensor([rows])
        self.calls: list[tuple[torch.Size, list[torch.Size]]] = []

    def __call__(self, image: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        self.calls.append((image.shape, [grid.shape for grid in grids]))
        return self.rows


def test_detector_runs_at_short_side_416_rounded_up_to_32():
    assert detector_size(640, 480) == (576, 416)
    assert detector_size(256, 256) == (416, 416)
    assert detector_size(300, 1000) == (416, 1408)


def test_grids_hold_cell_coordinates_for_each_stride():
    grids = detection_grids(96, 64, torch.device("cpu"))
    assert [grid.shape for grid in grids] == [(1, 1, 64 // s, 96 // s, 2) for s in STRIDES]
    assert grids[0][0, 0, 2, 5].tolist() == [5.0, 2.0]


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert non_max_suppression(boxes, scores, 0.45).tolist() == [1, 2]


def test_faces_are_thresholded_suppressed_and_scaled_back_to_the_image():
    image = torch.zeros(208, 320, 3)  # detector input 640 x 416: a factor of 2
    detector = StubDetector(
        [
            row(100, 100, 40, 60, obj=0.95),
            row(102, 101, 40, 60, obj=0.90),  # duplicate of the first
            row(300, 200, 80, 100, obj=0.80),
            row(500, 300, 50, 50, obj=0.40),  # below the confidence threshold
            row(400, 100, 50, 50, obj=0.90, cls=0.5),  # obj x cls below the threshold
        ]
    )
    faces = detect_faces(detector, image)
    assert detector.calls[0][0] == (1, 3, 416, 640)
    assert [round(face.score, 6) for face in faces] == [0.95, 0.8]
    assert faces[0].box == FaceBox(40.0, 35.0, 20.0, 30.0)
    assert faces[0].landmarks[2] == (50.0, 50.0)
    assert largest_face(faces) is faces[1]


def test_no_face_gives_an_empty_list_and_no_largest_face():
    faces = detect_faces(StubDetector([row(10, 10, 5, 5, obj=0.1)]), torch.zeros(64, 64, 3))
    assert faces == []
    assert largest_face(faces) is None


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0)])
def test_largest_face_is_the_largest_whatever_the_order(order):
    sizes = [(10, 10), (30, 40), (20, 20)]
    faces = [Detection(FaceBox(0, 0, *sizes[i]), 0.9, ()) for i in order]
    assert largest_face(faces).box.w == 30
