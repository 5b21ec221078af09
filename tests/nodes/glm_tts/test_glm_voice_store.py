"""Voices at rest: sealed with a per-owner key, found only in the caller's folder or the shared one; the raw
prompt audio a saved voice came from is found through the prompt graph, inside the caller's input folder only."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from nodes.glm_tts.voice import Voice
from nodes.glm_tts_comfy import voices as store
from nodes.glm_tts_comfy.sealed_voice import (
    SHARED_SCOPE,
    VoiceUnreadable,
    read_sealed,
    scope_of,
    seal,
    unseal,
    voice_key,
    write_sealed,
)

SECRET = b"test master secret"


@pytest.fixture()
def voice() -> Voice:
    generator = torch.Generator().manual_seed(7)
    return Voice(prompt_text="你好，这是一个测试。", prompt_text_tokens=[5, 6, 7],
                 prompt_speech_tokens=list(range(100, 150)), prompt_mel=torch.randn(100, 80, generator=generator),
                 embedding=torch.randn(192, generator=generator))


def same(a: Voice, b: Voice) -> bool:
    return (a.prompt_text, a.prompt_text_tokens, a.prompt_speech_tokens, a.sample_rate) == \
        (b.prompt_text, b.prompt_text_tokens, b.prompt_speech_tokens, b.sample_rate) and \
        torch.equal(a.prompt_mel, b.prompt_mel) and torch.equal(a.embedding, b.embedding)


def test_voice_round_trips_through_bytes(voice):
    assert same(Voice.from_bytes(voice.to_bytes()), voice)
    with pytest.raises(ValueError, match="not_a_voice_file"):
        Voice.from_bytes(b"garbage")


def test_sealed_voice_holds_nothing_of_the_voice_in_clear(voice):
    blob = seal(voice, voice_key(SECRET, "tenant-a"), "tenant-a")
    assert voice.embedding.numpy().tobytes() not in blob
    assert voice.embedding.numpy()[:8].tobytes() not in blob
    assert voice.prompt_mel.numpy()[0].tobytes() not in blob
    for text in (b"prompt_speech_tokens", b"embedding", voice.prompt_text.encode()):
        assert text not in blob
    assert same(unseal(blob, voice_key(SECRET, "tenant-a"), "tenant-a"), voice)


def test_keys_differ_per_owner_and_follow_the_master_secret():
    keys = {voice_key(SECRET, scope) for scope in ("tenant-a", "tenant-b", SHARED_SCOPE, scope_of(None))}
    assert len(keys) == 4 and all(len(k) == 32 for k in keys)
    assert voice_key(SECRET, "tenant-a") == voice_key(SECRET, "tenant-a") != voice_key(b"other", "tenant-a")
    assert scope_of("shared") != scope_of("anyone", shared=True)


def test_a_voice_does_not_open_with_another_owners_key_or_scope(voice):
    blob = seal(voice, voice_key(SECRET, "tenant-a"), "tenant-a")
    with pytest.raises(VoiceUnreadable, match="does not open"):
        unseal(blob, voice_key(SECRET, "tenant-b"), "tenant-b")
    with pytest.raises(VoiceUnreadable, match="does not open"):
        unseal(blob, voice_key(SECRET, "tenant-a"), "tenant-b")
    with pytest.raises(VoiceUnreadable, match="does not open"):
        unseal(blob[:-1] + bytes([blob[-1] ^ 1]), voice_key(SECRET, "tenant-a"), "tenant-a")
    with pytest.raises(VoiceUnreadable, match="not a sealed"):
        unseal(voice.to_bytes(), voice_key(SECRET, "tenant-a"), "tenant-a")


def test_sealed_file_is_private_to_the_server_user(voice, tmp_path):
    path = tmp_path / "voices" / "v.voice"
    write_sealed(path, voice, voice_key(SECRET, "t"), "t")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["v.voice"]
    assert same(read_sealed(path, voice_key(SECRET, "t"), "t"), voice)


def test_tenant_voices_are_listed_and_loaded_only_by_their_tenant(voice, tmp_path):
    store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    assert (tmp_path / "tenants" / "tenant-a" / "voices" / "narrator.voice").is_file()
    assert store.voice_names(tmp_path, "tenant-a") == ["narrator"]
    assert store.voice_names(tmp_path, "tenant-b") == []
    assert same(store.load_voice(tmp_path, "tenant-a", "narrator", SECRET), voice)
    with pytest.raises(store.VoiceNotFound, match="voice_not_found: there is no voice 'narrator'"):
        store.load_voice(tmp_path, "tenant-b", "narrator", SECRET)


@pytest.mark.parametrize("name", ["../tenant-a/voices/narrator", "tenants/tenant-a/voices/narrator", "/etc/passwd",
                                  "", "a/b", "shared/../tenants/tenant-a/voices/narrator", "./narrator", "x\x00"])
def test_path_like_voice_names_are_refused(voice, tmp_path, name):
    store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    with pytest.raises(store.VoiceRefused, match="voice_name_invalid"):
        store.load_voice(tmp_path, "tenant-b", name, SECRET)


def test_a_voice_file_moved_into_another_tenants_folder_does_not_open(voice, tmp_path):
    source = store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    target = tmp_path / "tenants" / "tenant-b" / "voices" / "stolen.voice"
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    with pytest.raises(VoiceUnreadable):
        store.load_voice(tmp_path, "tenant-b", "stolen", SECRET)


def test_operators_publish_shared_voices_that_every_tenant_lists_and_loads(voice, tmp_path):
    with pytest.raises(store.VoiceRefused, match="voice_shared_read_only"):
        store.save_voice(tmp_path, "tenant-a", "shared/studio", voice, SECRET)
    store.save_voice(tmp_path, None, "shared/studio", voice, SECRET)
    for tenant in ("tenant-a", "tenant-b", None):
        assert "shared/studio" in store.voice_names(tmp_path, tenant)
        assert same(store.load_voice(tmp_path, tenant, "shared/studio", SECRET), voice)


def test_saving_over_an_existing_voice_needs_overwrite(voice, tmp_path):
    store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    with pytest.raises(store.VoiceRefused, match="voice_exists"):
        store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET, overwrite=True)


def test_warm_up_preloads_shared_voices_so_loading_them_decrypts_nothing(voice, tmp_path, monkeypatch):
    path = tmp_path / "shared" / "voices" / "studio.voice"
    write_sealed(path, voice, voice_key(SECRET, SHARED_SCOPE), SHARED_SCOPE)
    assert store.warm_up(tmp_path, SECRET) == ["shared/studio"]
    monkeypatch.setattr(store, "read_sealed", lambda *_: pytest.fail("decrypted again"))
    assert same(store.load_voice(tmp_path, "tenant-b", "shared/studio", SECRET), voice)


def test_fingerprint_separates_tenants_and_follows_the_file(voice, tmp_path):
    before = store.voice_fingerprint(tmp_path, "tenant-a", "narrator")
    store.save_voice(tmp_path, "tenant-a", "narrator", voice, SECRET)
    after = store.voice_fingerprint(tmp_path, "tenant-a", "narrator")
    assert before != after != store.voice_fingerprint(tmp_path, "tenant-b", "narrator")


def clone_prompt(audio: str, voice_source: str = "GlmTtsVoice") -> dict:
    return {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": audio}},
        "2": {"class_type": "GlmTtsLoader", "inputs": {"model": "GLM-TTS", "precision": "auto"}},
        "3": {"class_type": voice_source, "inputs": {"model": ["2", 0], "audio": ["1", 0], "prompt_text": "hi"}},
        "4": {"class_type": "GlmTtsSaveVoice", "inputs": {"voice": ["3", 0], "name": "v", "overwrite": False}},
    }


@pytest.fixture()
def input_dir(tmp_path):
    for tenant, name in (("tenant-a", "p.wav"), ("tenant-b", "q.wav")):
        (tmp_path / "tenants" / tenant).mkdir(parents=True)
        (tmp_path / "tenants" / tenant / name).write_bytes(b"RIFF")
    (tmp_path / "GLM-TTS").write_bytes(b"a top-level input file named like the model folder")
    return tmp_path


def test_prompt_audio_is_the_file_upstream_of_the_voice_nodes_audio(input_dir):
    prompt = clone_prompt("tenants/tenant-a/p.wav")
    files = store.prompt_audio_files(prompt, "4", input_dir, "tenant-a")
    assert files == [input_dir / "tenants" / "tenant-a" / "p.wav"]
    assert store.delete_files(files, input_dir, "tenant-a") == ["p.wav"]
    assert not files[0].exists() and (input_dir / "GLM-TTS").exists()


def test_prompt_audio_outside_the_tenants_input_folder_is_never_touched(input_dir):
    for audio in ("tenants/tenant-b/q.wav", "../tenants/tenant-b/q.wav", "GLM-TTS", "tenants/tenant-a/p.wav [output]"):
        assert store.prompt_audio_files(clone_prompt(audio), "4", input_dir, "tenant-a") == []


def test_a_voice_that_was_loaded_not_cloned_has_no_prompt_audio(input_dir):
    assert store.prompt_audio_files(clone_prompt("tenants/tenant-a/p.wav", "GlmTtsLoadVoice"), "4", input_dir,
                                    "tenant-a") == []


def test_upstream_strings_follow_links_transitively_and_survive_cycles():
    prompt = {"1": {"inputs": {"a": "x.wav", "b": ["2", 0]}}, "2": {"inputs": {"c": "y.wav", "d": ["1", 0]}},
              "3": {"inputs": {"audio": ["1", 0]}}}
    assert sorted(store.upstream_strings(prompt, "3", "audio")) == ["x.wav", "y.wav"]


def test_the_master_secret_is_read_once_not_on_every_voice_save_and_load(tmp_path, monkeypatch):
    from nodes.shared_comfy.guard import context
    from tenancy import bootstrap
    from tenancy import config as config_module

    config_path = tmp_path / "tenancy" / "config.yaml"
    bootstrap.initialise(config_path.parent, config_path)
    monkeypatch.setenv(config_module.ENV_CONFIG, str(config_path))
    secret_file = config_path.parent / "master.secret"
    secret_file.unlink()
    with pytest.raises(FileNotFoundError, match="master_secret_missing"):
        context.master_secret()
    bootstrap.write_secret(secret_file)  # `init` run while the server is up: no restart needed
    secret = context.master_secret()
    assert secret == bootstrap.read_secret(secret_file)
    monkeypatch.setattr(config_module, "load", lambda *_: pytest.fail("the config was read again"))
    monkeypatch.setattr(bootstrap, "read_secret", lambda *_: pytest.fail("the secret was read again"))
    assert context.master_secret() == secret
