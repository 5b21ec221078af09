"""TTS profiles: a global tts.yaml and a per-tenant one, validated and merged (the tenant wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.glm_tts_comfy.profile import ProfileError, Sampling, TtsProfile, load_profile, parse_layer


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_without_any_file_the_defaults_are_upstreams():
    profile = load_profile(Path("/nonexistent/tts.yaml"), Path("/nonexistent/t/tts.yaml"))
    assert profile == TtsProfile()
    assert profile.sampling == Sampling(top_p=0.8, top_k=25, temperature=1.0, ras_window=10)
    assert profile.sample_rates == (24000,) and profile.delete_prompt_audio is False


def test_tenant_settings_override_global_ones_field_by_field(tmp_path):
    glob = write(tmp_path / "tts.yaml", "sampling: {top_k: 40, temperature: 0.9}\nmax_text_chars: 300\n"
                                        "sample_rates: [24000, 16000]\n")
    tenant = write(tmp_path / "tenants" / "a" / "tts.yaml", "sampling: {temperature: 0.7}\ndelete_prompt_audio: true\n")
    profile = load_profile(glob, tenant)
    assert profile.sampling == Sampling(top_p=0.8, top_k=40, temperature=0.7, ras_window=10)
    assert profile.max_text_chars == 300 and profile.sample_rates == (24000, 16000)
    assert profile.delete_prompt_audio is True
    assert profile.sources == (str(glob), str(tenant))
    assert load_profile(glob).delete_prompt_audio is False


def test_dictionary_from_a_jsonl_file_next_to_the_profile_in_upstream_format(tmp_path):
    write(tmp_path / "a" / "words.jsonl", '{"银行": "银<|H|><|ANG2|>"}\n\n{"弈": "<|I4|>"}\n')
    tenant = write(tmp_path / "a" / "tts.yaml", "dictionary: words.jsonl\n")
    assert load_profile(tmp_path / "tts.yaml", tenant).dictionary == {"银行": "银<|H|><|ANG2|>", "弈": "<|I4|>"}


def test_tenant_dictionary_entries_are_added_on_top_of_the_global_ones(tmp_path):
    glob = write(tmp_path / "tts.yaml", 'dictionary: {"行": "<|X|><|ING2|>", "乐": "<|Y|><|UE4|>"}\n')
    tenant = write(tmp_path / "a" / "tts.yaml",
                   'dictionary:\n  - {"行": "<|H|><|ANG2|>"}\n  - {"重": "<|CH|><|ONG2|>"}\n')
    assert load_profile(glob, tenant).dictionary == {"行": "<|H|><|ANG2|>", "乐": "<|Y|><|UE4|>",
                                                     "重": "<|CH|><|ONG2|>"}


def test_fingerprint_changes_with_the_dictionary_but_not_with_where_it_was_read(tmp_path):
    one = load_profile(write(tmp_path / "x" / "tts.yaml", 'dictionary: {"a": "b"}\n'))
    same = load_profile(write(tmp_path / "y" / "tts.yaml", 'dictionary: {"a": "b"}\n'))
    other = load_profile(write(tmp_path / "z" / "tts.yaml", 'dictionary: {"a": "c"}\n'))
    assert one.fingerprint() == same.fingerprint() != other.fingerprint()


def test_a_dictionary_path_cannot_leave_the_profile_folder(tmp_path):
    write(tmp_path / "b" / "secret.jsonl", '{"x": "y"}\n')
    tenant = write(tmp_path / "a" / "tts.yaml", "dictionary: ../b/secret.jsonl\n")
    with pytest.raises(ProfileError, match="leaves the profile's folder"):
        load_profile(tmp_path / "tts.yaml", tenant)


@pytest.mark.parametrize(("text", "key"), [
    ("temperature: 0.5\n", "temperature"),
    ("sampling: {top_p: 1.5}\n", "sampling.top_p"),
    ("sampling: {top_k: 0}\n", "sampling.top_k"),
    ("sampling: {temperature: 0}\n", "sampling.temperature"),
    ("sampling: {beam: 2}\n", "sampling.beam"),
    ("sampling: 3\n", "sampling"),
    ("max_text_chars: many\n", "max_text_chars"),
    ("sample_rates: [24000, 1]\n", "sample_rates"),
    ("sample_rates: []\n", "sample_rates"),
    ("delete_prompt_audio: yes please\n", "delete_prompt_audio"),
    ('dictionary: [{"a": 1}]\n', "dictionary"),
    ("dictionary: missing.jsonl\n", "dictionary"),
    ("- a list\n", "(top level)"),
    ("sampling: {top_p: [\n", "(file)"),
])
def test_invalid_settings_are_refused_naming_file_and_key(tmp_path, text, key):
    path = write(tmp_path / "tts.yaml", text)
    with pytest.raises(ProfileError) as refused:
        load_profile(path)
    assert refused.value.key == key and refused.value.source == str(path)
    assert str(refused.value).startswith(f"tts_profile_invalid: {path}: `{key}`")


def test_a_bad_dictionary_line_names_its_line(tmp_path):
    write(tmp_path / "words.jsonl", '{"a": "b"}\n["not", "an", "object"]\n')
    with pytest.raises(ProfileError, match="bad_dictionary_line 2"):
        parse_layer({"dictionary": "words.jsonl"}, tmp_path, "tts.yaml")
