"""Portrait preparation (resize, face mask, CLIP input) against upstream `image_audio_to_tensor`."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nodes.sonic.crop import FaceBox, crop_box
from nodes.sonic.portrait import crop_to_face, image_to_pil, portrait_tensors


def test_portrait_tensors_match_upstream_image_prep(parity, read_image):
    fixture = parity("denoise")
    prep = fixture.meta["inputs"]["image_prep"]
    expected = fixture.arrays("io.npz")
    image = image_to_pil(read_image(fixture.media(prep["image"])))

    tensors = portrait_tensors(image, FaceBox(*prep["face_bbox_xywh"]), prep["min_resolution"], prep["area"])

    tol = fixture.tolerance("intermediates")
    np.testing.assert_allclose(tensors.ref_image.numpy(), expected["in_ref_img"], **tol)
    np.testing.assert_allclose(tensors.face_mask.numpy(), expected["in_face_mask"][:, :1], **tol)
    np.testing.assert_allclose(tensors.clip_image.numpy(), expected["in_clip_image"], **tol)


def test_comfy_image_round_trips_to_the_same_8bit_pixels(parity, read_image):
    fixture = parity("denoise")
    path = fixture.media(fixture.meta["inputs"]["image_prep"]["image"])
    original = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(np.asarray(image_to_pil(read_image(path))), original)


def test_crop_to_face_moves_the_face_box_into_the_square_crop():
    image = Image.new("RGB", (100, 80))
    face = FaceBox(30, 20, 30, 36)
    cropped, moved = crop_to_face(image, face, 0.5)
    x1, y1, x2, y2 = crop_box(face, 0.5, 100, 80)
    assert cropped.size == (x2 - x1, y2 - y1) == (60, 60)
    assert (moved.x, moved.y, moved.w, moved.h) == (face.x - x1, face.y - y1, face.w, face.h)


def test_portrait_working_size_is_multiple_of_64():
    image = Image.new("RGB", (300, 200))
    tensors = portrait_tensors(image, FaceBox(100, 50, 60, 80), 128, 1.1)
    assert tensors.ref_image.shape == (1, 3, 128, 192)
    assert tensors.face_mask.shape == (1, 1, 128, 192)
    assert tensors.clip_image.shape == (1, 3, 224, 224)
    assert torch.all(tensors.ref_image == -1)
