"""Crop, face-mask and working-size arithmetic against upstream's outputs (fixture `crop`)."""

from __future__ import annotations

import pytest

from nodes.sonic.crop import FaceBox, crop_box, face_mask_rect, working_size


@pytest.fixture(scope="module")
def cases(parity):
    fixture = parity("crop")
    assert fixture.tolerance() == {"atol": 0.0, "rtol": 0.0}
    return fixture.json("cases.json")["cases"]


def test_crop_matches_upstream_banker_rounding(cases):
    for case in cases:
        width, height = case["image_wh"]
        box = crop_box(FaceBox(*case["face_bbox_xywh"]), case["expand_ratio"], width, height)
        assert list(box) == case["expected"]["crop_bbox_xyxy"], case["name"]


def test_banker_cases_differ_from_half_up_rounding(cases):
    banker = [case for case in cases if case["expected"]["bankers_rounding_matters"]]
    assert banker, "the fixture should contain cases where rounding half-to-even matters"
    for case in banker:
        width, height = case["image_wh"]
        box = list(crop_box(FaceBox(*case["face_bbox_xywh"]), case["expand_ratio"], width, height))
        size = list(working_size(width, height, case["min_resolution"]))
        wrong = case["expected"]["half_up_would_give"]
        assert (box, size) != (wrong["crop_bbox_xyxy"], wrong["resized_wh"]), case["name"]


def test_face_mask_rectangle_matches_upstream(cases):
    for case in cases:
        width, height = case["image_wh"]
        x0, y0, x1, y1 = face_mask_rect(FaceBox(*case["face_bbox_xywh"]), case["area"], width, height)
        assert [x0, y0, x1, y1] == case["expected"]["mask_rect_xyxy"], case["name"]
        assert max(x1 - x0, 0) * max(y1 - y0, 0) == case["expected"]["mask_pixels"], case["name"]


def test_working_size_is_multiple_of_64_with_short_side_near_min_resolution(cases):
    for case in cases:
        width, height = case["image_wh"]
        size = working_size(width, height, case["min_resolution"])
        assert list(size) == case["expected"]["resized_wh"], case["name"]
        assert (size != (width, height)) == case["expected"]["resize_applied"], case["name"]
