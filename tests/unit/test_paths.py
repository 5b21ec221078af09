"""tenancy.paths, by example: each tenant sees only its own input/, output/ and temp/ files.

Where an example says where ComfyUI 0.3.75 reads a rewritten value from, it applies ComfyUI's own rule
(`folder_paths.annotated_filepath`: a trailing `[output]`/`[input]`/`[temp]` picks the folder and drops
len(suffix)+1 characters; no suffix means input/), which has no traversal check of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenancy.paths import (
    MAX_NAME,
    FileRef,
    PathRefused,
    clean_name,
    contained,
    contained_file,
    map_file_input,
    map_output_prefix,
    map_subfolder,
    split_annotation,
    virtual_subfolder,
)


def comfy_reads(comfy_value: str) -> tuple[str, str]:
    """(folder, path relative to it) that ComfyUI opens for a rewritten file-input value."""
    for suffix, folder in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
        if comfy_value.endswith(suffix):
            return folder, os.path.normpath(comfy_value[: -len(suffix) - 1])
    return "input", os.path.normpath(comfy_value)


@pytest.fixture
def folders(tmp_path) -> Path:
    """<tmp>/{input,output,temp}/tenants/{a,b,ab}/ with a file each, and a secret outside."""
    for folder in ("input", "output", "temp"):
        for tenant in ("a", "b", "ab"):
            (tmp_path / folder / "tenants" / tenant / "sub").mkdir(parents=True)
            (tmp_path / folder / "tenants" / tenant / "cat.png").write_text(f"{tenant}'s cat")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    return tmp_path


# -- names as text -------------------------------------------------------------------------------------

def test_clean_name_normalises_a_plain_relative_name():
    assert clean_name("sub/cat.png") == "sub/cat.png"
    assert clean_name("./sub//cat.png/.") == "sub/cat.png"
    assert clean_name("...") == "..."  # three dots are a name, not a way up


def test_load_image_with_dot_dot_to_output_is_refused():
    # GHSA-779p: LoadImage's "../output/x.png" read another folder; every `..` is refused.
    for value in ("../output/x.png", "../../output/x.png", "sub/../../b/cat.png", "..", "./../x.png",
                  "upload://a/../b/cat.png", "../output/x.png [input]"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_absolute_home_and_drive_paths_are_refused():
    for value in ("/etc/passwd", "//server/share/x.png", "~/x.png", "~b/x.png", "C:/x.png", "c:x.png",
                  "/x.png [output]"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_backslash_is_refused():
    for value in ("..\\b\\cat.png", "sub\\cat.png", "\\\\server\\share\\x.png", "C:\\x.png"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_percent_encoded_dot_dot_is_refused():
    for value in ("%2e%2e/b/cat.png", "%2E%2E%2Fb%2Fcat.png", "..%2fb%2fcat.png", "%2e%2e%5cb",
                  "%252e%252e%252fb",  # double-encoded: %25 is itself an encoding
                  "sub%2fcat.png", "cat.png%00"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_nul_and_control_characters_are_refused():
    for value in ("cat.png\x00.jpg", "cat\n.png", "cat\r.png", "\x1b[31m.png", "cat\x7f.png", "\t"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_lone_surrogate_is_refused():
    # JSON can carry "\ud800"; no filesystem name can, so the on-disk check must not crash on it.
    with pytest.raises(PathRefused):
        ref = map_file_input("a", "\ud800.png")
        contained(Path("/tmp"), ref.relative, "a")


def test_name_longer_than_the_limit_is_refused():
    assert map_file_input("a", "x" * MAX_NAME).relative == "tenants/a/" + "x" * MAX_NAME
    with pytest.raises(PathRefused):
        map_file_input("a", "x" * (MAX_NAME + 1))


def test_empty_name_is_refused():
    for value in ("", ".", "./", "//", " [output]", "upload://a/", "upload://a"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_a_value_that_is_not_a_string_is_refused():
    for value in (None, 7, 1.5, ["x.png"], {"name": "x.png"}, b"x.png"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)
        with pytest.raises(PathRefused):
            clean_name(value)


# -- file inputs ---------------------------------------------------------------------------------------

def test_plain_name_maps_into_own_input_folder():
    ref = map_file_input("a", "sub/cat.png")
    assert (ref.folder, ref.relative) == ("input", "tenants/a/sub/cat.png")
    assert comfy_reads(ref.comfy_value) == ("input", "tenants/a/sub/cat.png")


def test_annotation_output_maps_into_own_output_folder():
    ref = map_file_input("a", "ComfyUI_00001_.png [output]")
    assert ref == FileRef("output", "tenants/a/ComfyUI_00001_.png", "tenants/a/ComfyUI_00001_.png [output]")
    assert comfy_reads(ref.comfy_value) == ("output", "tenants/a/ComfyUI_00001_.png")


def test_annotation_input_maps_into_own_input_folder():
    ref = map_file_input("a", "sub/cat.png [input]")
    assert (ref.folder, ref.relative) == ("input", "tenants/a/sub/cat.png")
    assert comfy_reads(ref.comfy_value) == ("input", "tenants/a/sub/cat.png")


def test_split_annotation_follows_comfyui():
    assert split_annotation("x.png [output]") == ("x.png", "output")
    assert split_annotation("x.png [input]") == ("x.png", "input")
    assert split_annotation("x.png [temp]") == ("x.png", "temp")
    assert split_annotation("x.png[output]") == ("x.pn", "output")  # ComfyUI drops one more character
    assert split_annotation("x.png [OUTPUT]") == ("x.png [OUTPUT]", None)
    assert split_annotation("x.png [output] ") == ("x.png [output] ", None)
    assert split_annotation("[output] x.png") == ("[output] x.png", None)


def test_temp_annotation_maps_into_own_temp_folder():
    # previews are written to temp/tenants/<t>/ (execution is confined), so `[temp]` names are the tenant's too
    ref = map_file_input("a", "ComfyUI_temp_abcde_00001_.png [temp]")
    assert ref == FileRef("temp", "tenants/a/ComfyUI_temp_abcde_00001_.png",
                          "tenants/a/ComfyUI_temp_abcde_00001_.png [temp]")
    assert comfy_reads(ref.comfy_value) == ("temp", "tenants/a/ComfyUI_temp_abcde_00001_.png")


def test_upload_uri_of_own_tenant_maps_into_own_input_folder():
    ref = map_file_input("a", "upload://a/sub/cat.png")
    assert (ref.folder, ref.relative) == ("input", "tenants/a/sub/cat.png")
    assert comfy_reads(ref.comfy_value) == ("input", "tenants/a/sub/cat.png")


def test_upload_uri_of_another_tenant_is_refused():
    for value in ("upload://b/cat.png", "upload://ab/cat.png", "upload://A/cat.png", "upload:///cat.png",
                  "upload://b/../a/cat.png", "upload://a/../b/cat.png", "upload://a%2f..%2fb/cat.png"):
        with pytest.raises(PathRefused):
            map_file_input("a", value)


def test_comfyui_reads_the_file_the_guard_checked():
    # The rewritten value must not end in an annotation ComfyUI would act on a second time.
    for value in ("cat.png [output]/.", "upload://a/cat.png [output]", "cat[temp]/", "upload://a/cat.png [temp]"):
        try:
            ref = map_file_input("a", value)
        except PathRefused:
            continue
        assert comfy_reads(ref.comfy_value) == (ref.folder, os.path.normpath(ref.relative)), value


def test_annotation_inside_a_name_cannot_climb_out_of_the_tenant():
    # ".. [output]" is a harmless name to clean_name, but ComfyUI strips " [output]" and is left with "..".
    for value in ("upload://a/.. [output]", ".. [output]/.", "upload://a/..x[input]", "sub/.. [temp]/"):
        try:
            ref = map_file_input("a", value)
        except PathRefused:
            continue
        folder, path = comfy_reads(ref.comfy_value)
        assert path == "tenants/a" or path.startswith("tenants/a/"), (value, ref, folder, path)


# -- output prefixes and subfolders --------------------------------------------------------------------

def test_output_prefix_maps_into_own_output_folder():
    assert map_output_prefix("a", "ComfyUI") == "tenants/a/ComfyUI"
    assert map_output_prefix("a", "") == "tenants/a/ComfyUI"
    assert map_output_prefix("a", "videos/clip") == "tenants/a/videos/clip"
    assert map_output_prefix("a", "./videos//clip/") == "tenants/a/videos/clip"


def test_output_prefix_that_climbs_out_is_refused():
    for prefix in ("../x", "videos/../../b/x", "/tmp/x", "~/x", "C:/x", "a\\..\\..\\b", "%2e%2e/x", ".", "./",
                   None, 7):
        with pytest.raises(PathRefused):
            map_output_prefix("a", prefix)


def test_prefix_tokens_are_kept():
    prefix = "%year%-%month%-%day%/%hour%%minute%%second%_%width%x%height%"
    assert map_output_prefix("a", prefix) == f"tenants/a/{prefix}"


def test_prefix_tokens_cannot_hide_a_percent_encoding():
    for prefix in ("%year%2e%2e/x", "%2%width%e%2%width%e/x", "%width%%2f", "%date:yyyy%2e"):
        with pytest.raises(PathRefused):
            map_output_prefix("a", prefix)


def test_subfolder_maps_into_own_folder():
    assert map_subfolder("a", "") == "tenants/a"
    assert map_subfolder("a", None) == "tenants/a"
    assert map_subfolder("a", "sub") == "tenants/a/sub"
    assert map_subfolder("a", "./sub//deep/") == "tenants/a/sub/deep"


def test_subfolder_that_climbs_out_is_refused():
    for subfolder in ("..", "../b", "sub/../../b", "/etc", "~", "sub\\..\\..", "%2e%2e", 7):
        with pytest.raises(PathRefused):
            map_subfolder("a", subfolder)


def test_virtual_subfolder_round_trip():
    for subfolder in ("", "sub", "sub/deep", "tenants/b"):
        assert virtual_subfolder("a", map_subfolder("a", subfolder)) == subfolder
        assert virtual_subfolder("b", map_subfolder("a", subfolder)) is None
    assert virtual_subfolder("a", "tenants/a") == ""
    assert virtual_subfolder("a", "tenants/ab") is None
    assert virtual_subfolder("a", "tenants/ab/sub") is None
    assert virtual_subfolder("a", "tenants") is None
    assert virtual_subfolder("a", "") is None
    assert virtual_subfolder("a", "sub") is None


# -- on disk: contained() ------------------------------------------------------------------------------

def test_ordinary_file_is_contained(folders):
    assert contained(folders / "input", "tenants/a/cat.png", "a") == os.path.realpath(
        folders / "input" / "tenants" / "a" / "cat.png")
    assert contained(folders / "input", "tenants/a/sub/not-yet-uploaded.png", "a").endswith("/not-yet-uploaded.png")
    assert contained(folders / "input", "tenants/a", "a") == os.path.realpath(folders / "input/tenants/a")


def test_another_tenants_file_is_refused(folders):
    for relative in ("tenants/b/cat.png", "tenants/ab/cat.png", "tenants/a/../b/cat.png", "tenants",
                     "../outside/secret.txt", "/etc/passwd"):
        with pytest.raises(PathRefused):
            contained(folders / "input", relative, "a")


def test_symlink_in_tenant_input_pointing_outside_is_refused(folders):
    # ComfyUI #12285: a symlink inside the input folder let LoadImage read any file.
    a = folders / "input" / "tenants" / "a"
    (a / "passwd.png").symlink_to("/etc/passwd")
    (a / "b_cat.png").symlink_to("../b/cat.png")
    (a / "b_dir").symlink_to(folders / "input" / "tenants" / "b")
    (a / "outside").symlink_to("../../../outside")
    (a / "sub" / "up2").symlink_to("../..")
    for relative in ("tenants/a/passwd.png", "tenants/a/b_cat.png", "tenants/a/b_dir/cat.png", "tenants/a/b_dir",
                     "tenants/a/outside/secret.txt", "tenants/a/sub/up2/b/cat.png"):
        with pytest.raises(PathRefused):
            contained(folders / "input", relative, "a")
    # The tenant's own name for such a file passes the text checks and is refused on disk.
    ref = map_file_input("a", "b_dir/cat.png")
    with pytest.raises(PathRefused):
        contained(folders / ref.folder, ref.relative, "a")


def test_symlink_that_stays_inside_the_tenant_is_accepted(folders):
    a = folders / "input" / "tenants" / "a"
    (a / "alias.png").symlink_to("cat.png")
    (a / "sub" / "up").symlink_to("..")
    assert contained(folders / "input", "tenants/a/alias.png", "a") == os.path.realpath(a / "cat.png")
    assert contained(folders / "input", "tenants/a/sub/up/cat.png", "a") == os.path.realpath(a / "cat.png")


def test_contained_file_answers_regular_files_only_and_still_refuses_escapes(folders):
    a = folders / "input" / "tenants" / "a"
    (a / "alias.png").symlink_to("cat.png")
    (a / "away.txt").symlink_to(folders / "outside" / "secret.txt")
    real_cat = os.path.realpath(a / "cat.png")
    assert contained_file(folders / "input", "tenants/a/cat.png", "a") == real_cat
    assert contained_file(folders / "input", "tenants/a/alias.png", "a") == real_cat  # resolved the slow way
    for relative in ("tenants/a/sub", "tenants/a/missing.png", "tenants/a/sub/missing/deeper.png"):
        assert contained_file(folders / "input", relative, "a") is None, relative
    with pytest.raises(PathRefused):
        contained_file(folders / "input", "tenants/a/away.txt", "a")


def test_contained_without_a_tenant_keeps_to_the_folder(folders):
    assert contained(folders / "temp", "tenants/b/cat.png").endswith("/tenants/b/cat.png")
    (folders / "temp" / "escape").symlink_to("/etc")
    for relative in ("../outside/secret.txt", "escape/passwd", "/etc/passwd"):
        with pytest.raises(PathRefused):
            contained(folders / "temp", relative)
