"""The Sonic nodes' behaviour outside ComfyUI, and each smthemex/ComfyUI_Sonic bug shown fixed:
expand_ratio really crops, no face is a clear error (or the whole image on request), the largest face is the
one kept, seed 0 is a seed, and the output fps is not the window size."""

from __future__ import annotations

import logging

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes.sonic import Detection, FaceBox, load_sonic_models
from nodes.sonic.haar_detect import HaarFaces
from nodes.sonic_comfy.faces import NoFaceFound, YoloFaces, face_detector, pick_face
from nodes.sonic_comfy.files import AUTO, LICENCE, MissingSonicFile, SonicFolder
from nodes.sonic_comfy.steps import prepare, render
from tests.conftest import FIXTURES
from tests.harness.tiny_models import FixedFaces, write_face_detector_stub, write_sonic

MEDIA_DIR = FIXTURES / "media"
SMTHEMEX_NAMES = {"SONICTLoader", "SONIC_PreData", "SONICSampler"}
UPSTREAM_DEFAULT_SEED = 72589


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> SonicFolder:
    return SonicFolder((write_sonic(tmp_path_factory.mktemp("models")),))


@pytest.fixture(scope="module")
def models(folder):
    return load_sonic_models(folder.paths(), "cpu", torch.float32)


@pytest.fixture(scope="module")
def portrait(read_image):
    return read_image(MEDIA_DIR / "portrait_astronaut_256.png")


@pytest.fixture(scope="module")
def speech(read_wav):
    return {"waveform": read_wav(MEDIA_DIR / "speech_en_16k.wav")[None, None], "sample_rate": 16000}


@pytest.fixture(scope="module")
def prepared(portrait, speech, models):
    condition, _ = prepare(portrait, speech, 1.3, 64, 0.5, FixedFaces(FaceBox(84, 16, 62, 74)), mel=models.mel)
    return condition


def test_nodes_are_registered_under_names_that_do_not_clash_with_smthemex():
    ours = {"SonicLoader", "SonicPreprocess", "SonicSampler"}
    assert ours <= set(NODE_CLASS_MAPPINGS) and not SMTHEMEX_NAMES & set(NODE_CLASS_MAPPINGS)
    for name in ours:
        cls = NODE_CLASS_MAPPINGS[name]
        assert NODE_DISPLAY_NAME_MAPPINGS[name].startswith("Sonic ")
        assert cls.CATEGORY == "talking head/Sonic"
        assert isinstance(cls.TENANCY_META, dict)
    # Plan limits on steps and scales come from the config (`DEFAULT_FORBIDDEN`), not from the node.
    assert NODE_CLASS_MAPPINGS["SonicSampler"].TENANCY_META == {}
    assert NODE_CLASS_MAPPINGS["SonicPreprocess"].TENANCY_META["estimate"] == {
        "seconds_input": "duration", "audio_link": "audio"}


def test_loader_says_the_weights_are_non_commercial(monkeypatch, folder):
    monkeypatch.setattr(SonicFolder, "from_comfy", classmethod(lambda cls: folder))
    loader = NODE_CLASS_MAPPINGS["SonicLoader"]
    assert "CC BY-NC-SA 4.0" in LICENCE and LICENCE in loader.DESCRIPTION
    unet = loader.INPUT_TYPES()["required"]["unet"]
    assert LICENCE in unet[1]["tooltip"]
    assert unet[0] == [AUTO, "unet.pth"]


def test_missing_file_names_the_file_and_the_folder_it_goes_in(tmp_path):
    with pytest.raises(MissingSonicFile, match=r"unet\.safetensors or unet\.pth in " + str(tmp_path)):
        SonicFolder((tmp_path,)).paths()


def test_files_may_be_spread_over_several_sonic_folders(tmp_path, folder):
    (tmp_path / "unet.safetensors").write_bytes(b"")
    paths = SonicFolder((tmp_path, *folder.roots)).paths()
    assert paths.unet == tmp_path / "unet.safetensors"
    assert paths.whisper_dir == folder.roots[0] / "whisper-tiny"


def test_comfy_supplied_vae_and_image_encoder_need_no_folders(folder):
    root = folder.roots[0]
    paths = SonicFolder((root,)).paths(vae_folder=False, image_encoder_folder=False)
    assert paths.vae_dir is None and paths.image_encoder_dir is None


def test_expand_ratio_really_crops_the_portrait(portrait, speech):
    wide = torch.cat([portrait, torch.zeros_like(portrait)], dim=1)  # 512 x 256: face in the left half
    face = FixedFaces(FaceBox(84, 16, 62, 74))
    _, tight = prepare(wide, speech, 1.0, 64, 0.2, face)
    _, loose = prepare(wide, speech, 1.0, 64, 1.0, face)
    _, whole = prepare(wide, speech, 1.0, 64, 0.5, FixedFaces(), whole_image_if_no_face=True)
    assert whole.shape == (1, 64, 128, 3)  # upstream's node animates this whatever expand_ratio says
    assert tight.shape == loose.shape == (1, 64, 64, 3)
    assert not torch.allclose(tight, loose, atol=0.05)


def test_the_largest_face_is_chosen_not_the_last_larger_than_the_first():
    small, large, medium = FaceBox(0, 0, 10, 10), FaceBox(50, 50, 40, 40), FaceBox(100, 100, 20, 20)
    detections = [Detection(box, 0.9, ()) for box in (small, large, medium)]
    assert pick_face(detections, whole_image_if_none=False) == large


def test_no_face_is_a_clear_error_not_an_unbound_variable(portrait, speech):
    with pytest.raises(NoFaceFound, match=r"no face.*use_whole_image_if_no_face"):
        prepare(portrait, speech, 1.0, 64, 0.5, FixedFaces())


def test_no_face_with_the_option_on_animates_the_whole_image(portrait, speech, caplog):
    with caplog.at_level(logging.WARNING, logger="sonic"):
        result, preview = prepare(portrait, speech, 1.0, 64, 0.5, FixedFaces(), whole_image_if_no_face=True)
    assert not result.face_found and "no face found" in caplog.text
    assert torch.allclose(result.condition.portrait.face_mask, torch.ones_like(result.condition.portrait.face_mask))
    assert preview.shape == (1, 64, 64, 3)


def test_haar_cascade_finds_the_face_of_a_real_portrait_and_none_in_a_blank_image(portrait):
    haar = HaarFaces()
    box = pick_face(haar(portrait), whole_image_if_none=False)
    assert 70 < box.x + box.w / 2 < 150 and 20 < box.y + box.h / 2 < 90  # the astronaut's face
    assert haar(torch.full((256, 256, 3), 0.5)) == []


def test_yolo_torchscript_is_used_when_the_sonic_folder_has_one(tmp_path, portrait, caplog):
    stub = write_face_detector_stub(tmp_path / "yoloface_v5m.pt", [(0.1, 0.1, 0.2, 0.2), (0.4, 0.2, 0.4, 0.5)])
    with caplog.at_level(logging.INFO, logger="sonic"):
        detector = face_detector(stub, "cpu")
    assert isinstance(detector, YoloFaces) and "YOLOv5-face" in caplog.text
    box = pick_face(detector(portrait), whole_image_if_none=False)
    assert (box.x, box.y, box.w, box.h) == pytest.approx((0.4 * 256, 0.2 * 256, 0.4 * 256, 0.5 * 256), abs=1)
    assert isinstance(face_detector(None, "cpu"), HaarFaces)


def test_duration_longer_than_the_audio_is_capped_with_a_warning(portrait, speech, caplog):
    with caplog.at_level(logging.WARNING, logger="sonic"):
        result, _ = prepare(portrait, speech, 60.0, 64, 0.5, FixedFaces(FaceBox(84, 16, 62, 74)))
    assert "longer than the audio" in caplog.text
    assert result.condition.audio_frames == speech["waveform"].shape[-1] // 640


def test_audio_of_any_rate_and_channels_is_used_and_given_back_as_it_came(portrait, speech):
    stereo_48k = {"waveform": speech["waveform"].repeat(1, 2, 3), "sample_rate": 48000}
    result, _ = prepare(portrait, stereo_48k, 1.0, 64, 0.5, FixedFaces(FaceBox(84, 16, 62, 74)))
    assert result.condition.audio_frames == 25
    assert result.audio["sample_rate"] == 48000 and result.audio["waveform"].shape == (1, 2, 48000)


def test_seed_zero_is_a_seed_of_its_own(models, prepared):
    def frames(seed):
        return render(models, prepared, seed, 1, 1.0, 1.0, interpolate_frames=False).frames

    zero = frames(0)
    assert torch.equal(zero, frames(0))
    assert not torch.allclose(zero, frames(UPSTREAM_DEFAULT_SEED))


def test_fps_is_the_output_rate_and_never_the_window_size(models, prepared):
    seen = []
    hook = models.unet.register_forward_hook(lambda module, args, out: seen.append((args[0].shape[1], args[4])))
    totals = []
    try:
        plain = render(models, prepared, 1, 2, 1.0, 1.0, interpolate_frames=False,
                       progress=lambda total: totals.append(total) or (lambda done, steps: None))
        smooth = render(models, prepared, 1, 2, 1.0, 1.0, interpolate_frames=True)
    finally:
        hook.remove()
    frames = prepared.condition.audio_frames // 2
    assert (plain.frames.shape[0], plain.fps) == (frames, 12.5)
    assert (smooth.frames.shape[0], smooth.fps) == (2 * frames - 1, 25.0)
    assert totals == [2]  # two steps of one 25-frame window over 16 frames
    assert all(window == 25 and torch.all(time_ids[:, 0] == 12.5) for window, time_ids in seen)


def test_audio_output_lasts_exactly_as_long_as_the_video(models, prepared):
    for interpolate_frames in (False, True):
        result = render(models, prepared, 1, 1, 1.0, 1.0, interpolate_frames=interpolate_frames)
        rate = result.audio["sample_rate"]
        assert result.audio["waveform"].shape[-1] == round(result.frames.shape[0] / result.fps * rate)


def test_an_interruption_stops_sampling_after_the_current_window(models, prepared):
    class Interrupted(Exception):
        pass

    def interrupt(done, total):
        raise Interrupted  # what ComfyUI's progress callback raises once the user presses Cancel

    calls = []
    hook = models.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Interrupted):
            render(models, prepared, 1, 5, 1.0, 1.0, interpolate_frames=True, progress=lambda total: interrupt)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_interpolation_without_rife_says_which_file_is_missing(models, prepared):
    import dataclasses

    with pytest.raises(FileNotFoundError, match=r"RIFE/flownet\.pkl"):
        render(dataclasses.replace(models, rife=None), prepared, 1, 1, 1.0, 1.0, interpolate_frames=True)
