"""The tenant's file names go into /object_info combos in both shapes ComfyUI answers, and nothing else changes."""

from __future__ import annotations

import copy

import pytest

from tenancy.comfy.surfaces.object_info import _replace_options

OWN = ["mine.png", "sub/other.png"]


@pytest.mark.parametrize(("entry", "expected"), [
    # classic nodes (LoadImage): the list of names first, options second
    ([["a.png", "b.png"], {"image_upload": True}], [OWN, {"image_upload": True}]),
    ([["a.png"]], [OWN]),
    # V3 schema nodes (LoadAudio in newer ComfyUI): "COMBO" and the names under `options`, next to other flags
    (["COMBO", {"multiselect": False, "options": ["a.wav"], "audio_upload": True}],
     ["COMBO", {"multiselect": False, "options": OWN, "audio_upload": True}]),
])
def test_names_replaced_in_either_shape(entry, expected):
    _replace_options(entry, OWN)
    assert entry == expected


@pytest.mark.parametrize("entry", [
    ["COMBO", {"remote": {"route": "/somewhere"}}],  # names fetched elsewhere: nothing to replace
    ["STRING", {"default": ""}],
    ["COMBO"],
    [],
])
def test_other_shapes_are_left_alone(entry):
    before = copy.deepcopy(entry)
    _replace_options(entry, OWN)
    assert entry == before
