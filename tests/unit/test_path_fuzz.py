"""Property-based fuzz of tenancy.paths: nothing a tenant names ever reaches outside its own folders.

Every generated value is mapped for tenant "a" (tenant "b" exists on disk next to it) and the result is
resolved the way ComfyUI 0.3.75 resolves it (`annotated_filepath`, `os.path.join`, `os.path.normpath`,
`get_save_image_path`, `/view`, `/upload/image`) against a real temporary tree that also holds symlinks
pointing out of the tenant's folder (to tenant "b", to another folder, to the tree's root and to /etc).

Derandomized, so every run tries the same values; the example counts add up to over 100,000.
TENANCY_FUZZ_SCALE=10 fuzzes ten times longer, 0.05 gives a quick smoke run.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenancy.paths import (
    FOLDERS,
    MAX_NAME,
    PathRefused,
    clean_name,
    contained,
    map_file_input,
    map_output_prefix,
    map_subfolder,
    virtual_subfolder,
)

TENANT, OTHER = "a", "b"
SCALE = float(os.environ.get("TENANCY_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# -- the tree on disk ----------------------------------------------------------------------------------

# Links planted in <folder>/tenants/a/ ({root}, {folder} and {other} are filled in).
LINKS_OUT_OF_A = {
    "to_b": "{folder}/tenants/b",
    "to_b_rel": "../b",
    "b_secret": "../b/secret.png",
    "etc": "/etc",
    "passwd": "/etc/passwd",
    "to_other_folder": "{other}/tenants/a",
    "to_root": "{root}",
    "to_outside": "../../../outside",
}
# Links planted in <folder>/tenants/a/sub/.
LINKS_OUT_OF_SUB = {"up2": "../..", "b_link2": "../../b/secret.png"}
LINKS_INSIDE_A = {"inside_link": "sub", "loop": "loop"}  # and sub/up -> ..


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, str]:
    root = os.path.realpath(tmp_path_factory.mktemp("paths-fuzz"))
    roots = {folder: os.path.join(root, folder) for folder in FOLDERS}
    os.makedirs(os.path.join(root, "outside"))
    Path(root, "outside", "secret.txt").write_text("outside")
    for folder, folder_root in roots.items():
        other = roots["output" if folder == "input" else "input"]
        for tenant in (TENANT, OTHER, "ab"):
            os.makedirs(os.path.join(folder_root, "tenants", tenant, "sub", "deep"))
        a = os.path.join(folder_root, "tenants", TENANT)
        Path(a, "cat.png").write_text("a's cat")
        Path(a, "sub", "dog.png").write_text("a's dog")
        Path(folder_root, "tenants", OTHER, "secret.png").write_text("b's secret")
        Path(folder_root, "tenants", "ab", "x.png").write_text("ab's file")
        Path(folder_root, "ComfyUI_temp_00001_.png").write_text("a shared temp file")
        for name, target in {**LINKS_OUT_OF_A, **LINKS_INSIDE_A}.items():
            os.symlink(target.format(root=root, folder=folder_root, other=other), os.path.join(a, name))
        for name, target in {**LINKS_OUT_OF_SUB, "up": ".."}.items():
            os.symlink(target, os.path.join(a, "sub", name))
    return {"root": root, **roots}


def inside(path: str, root: str) -> bool:
    """`path` is `root` or below it (both absolute and normalised)."""
    return os.path.commonpath([path, root]) == root


def tenant_dir(tree: dict[str, str], folder: str, tenant: str) -> str:
    return os.path.join(tree[folder], "tenants", tenant)


def assert_never_other_tenant(tree: dict[str, str], path: str) -> None:
    for folder in FOLDERS:
        assert not inside(path, tenant_dir(tree, folder, OTHER)), path
        assert not inside(path, tenant_dir(tree, folder, "ab")), path


# -- ComfyUI 0.3.75, modelled --------------------------------------------------------------------------

def annotated_filepath(name: str) -> tuple[str, str | None]:
    """folder_paths.annotated_filepath, answering the folder's name instead of its directory."""
    for suffix, folder in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
        if name.endswith(suffix):
            return name[: -len(suffix) - 1], folder
    return name, None


def comfy_file_input(tree: dict[str, str], comfy_value: str) -> tuple[str, str]:
    """(folder, path) of the file LoadImage & co. open for a prompt value (get_annotated_filepath)."""
    name, folder = annotated_filepath(comfy_value)
    folder = folder or "input"
    return folder, os.path.normpath(os.path.join(tree[folder], name))


def comfy_save_path(prefix: str, output_dir: str, width: int, height: int) -> tuple[str, str]:
    """folder_paths.get_save_image_path: (full_output_folder, filename)."""
    if "%" in prefix:
        now = time.localtime()
        for token, value in (("%width%", str(width)), ("%height%", str(height)), ("%year%", str(now.tm_year)),
                             ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                             ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                             ("%second%", f"{now.tm_sec:02}")):
            prefix = prefix.replace(token, value)
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    assert os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) == output_dir
    return full_output_folder, filename


# -- generated values ----------------------------------------------------------------------------------
#
# Hypothesis's own cost per example (about half a millisecond here) dwarfs the checks, so each example is
# one `binary()` draw decoded into a value: header bytes pick a lead, a tail and a mode (path segments from
# a dangerous alphabet, raw latin-1 or UTF-16 text, a very long name, %-encoded once or twice, a non-string),
# then byte pairs pick (segment, separator). All-zero bytes decode to the plainest value, so failures shrink
# to readable examples; the assertion messages show the decoded value.

SEGMENTS = [
    "x.png", "..", ".", "", "...", "....", ". .", ".. ", " ..", "..%00", "..;", "..?", "..#",
    "%2e%2e", "%2E%2E", "%2e.", ".%2e", "%2e", "%252e%252e", "%25252e%25252e", "%%32%65%%32%65",
    "..%2f", "..%5c", "%2f", "%2F", "%5c", "%5C", "%00", "%0a", "%c0%ae%c0%ae", "%c0%af", "%e2%80%a5",
    "%u002e%u002e", "..\\", "\\..", "\\", "\x00", "\x01", "\x1f", "\x7f", "\n", "\r", "\t", "\x85", "\u2028",
    "~", "~root", "~b", "C:", "c:", "C:..", "\\\\?\\C:", "con", "NUL", "．．", "‥", "…", "∕", "⁄", "／", "＼",
    "\u202e", "\ufeff", "\u200b", "\u0301", "é", "e\u0301", "日本語", "🙂",
    "tenants", "a", "b", "ab", "A", "input", "output", "temp", "outside",
    *LINKS_OUT_OF_A, *LINKS_OUT_OF_SUB, *LINKS_INSIDE_A, "sub", "deep", "up",
    "cat.png", "dog.png", "secret.png", "secret.txt", "ComfyUI_temp_00001_.png",
    "[output]", "[input]", "[temp]", " [output]", " [input]", " [temp]", "[temp] ", "x[output]", "..x[output]",
    "upload:", "upload://b", "upload://a", "%width%", "%year%", "%", "%%", "%2", "%zz", "+", "?", ";", "#",
    ":", "*", " ", "  ",
]
SEPARATORS = ["/", "/", "/", "/", "\\", "//", "/./", "/../", "%2f", "%2F", "%5c", "%252f", "%25252f", "/%2e/",
              "/%2e%2e/", "\x00/", "/\x00", ""]
LEADS = [
    "", "", "", "", "/", "//", "///", "~", "~/", "~b/", "C:", "C:\\", "c:/", "Z:", "\\\\host\\share\\", "\\",
    "file://", "file:///etc/", "./", "../", "../../", "..\\", "%2e%2e%2f", "%252e%252e%252f", "tenants/b/",
    "tenants/a/", "tenants/a/../b/", "tenants/ab/", "/etc/", "../input/", "../output/", "../temp/",
    "upload://a/", "upload://a/", "upload://a/", "upload://b/", "upload://b/", "upload://", "upload://a",
    "upload:///", "upload://A/", "upload://a/../b/", "upload://a%2f", "upload://a/./", "upload://../",
    "upload://a/tenants/b/", "upload://a/..%2f", "upload://b/../a/", "upload://a/%2e%2e/", "UPLOAD://a/",
    " upload://a/", "upload:/a/", "upload://a\\", "upload://a//", "upload://a/ ", "upload://ab/", "upload://%61/",
    "upload://a/..", "upload://a/../../", "upload://b%2f..%2fa/",
]
TAILS = [
    "", "", "", "", " [output]", " [output]", "[output]", " [input]", "[input]", " [temp]", " [temp]", "[temp]",
    "  [output]", " [output] ", "[output]/", "[output]/.", " [OUTPUT]", "/.", "/", "//", "/..", " [output]/.",
    "%20[output]", "%5Boutput%5D", "\x00 [output]", ".png", "/x.png", " [temp]/.", "[input]/", "[temp]/",
]
LONG_UNITS = ["a", "ab/", "../", "./", "%2e%2e%2f", "x" * 50 + "/", "é", "/"]
NON_STRINGS = [None, 0, 7, -1, 1.5, float("nan"), True, False, b"x.png", ["x.png"], {"x": 1}, ("a",)]


def pick(table: list, byte: int):
    return table[byte % len(table)]


def decode_text(data: bytes) -> str:
    """A string from bytes laid out as [lead, tail, mode, body...]."""
    lead, tail, mode = pick(LEADS, data[0] if data else 0), pick(TAILS, data[1] if len(data) > 1 else 0), \
        (data[2] % 16 if len(data) > 2 else 0)
    body = data[3:]
    if mode == 9:
        text = body.decode("latin-1")  # every byte a character: NUL, controls, %, /, \, 0xff
    elif mode == 10:
        text = body.decode("utf-16-le", errors="replace")  # any BMP or astral character
    elif mode == 11:
        unit = pick(LONG_UNITS, body[0] if body else 0)
        text = unit * (int.from_bytes(body[1:3].ljust(2, b"\0"), "big") % (MAX_NAME + 16) + 1)
    else:
        text = "".join(pick(SEGMENTS, body[i]) + (pick(SEPARATORS, body[i + 1]) if i + 1 < len(body) else "")
                       for i in range(0, len(body), 2))
    text = lead + text + tail
    if mode == 12:
        return quote(text, safe="")
    if mode == 13:
        return quote(text, safe="/[] ")
    if mode == 14:
        return quote(quote(text, safe=""), safe="")
    return text


def decode_value(data: bytes) -> object:
    """As decode_text, but mode 15 gives a non-string (a JSON number, null, list, ...)."""
    if len(data) > 2 and data[2] % 16 == 15:
        return pick(NON_STRINGS, data[0])
    return decode_text(data)


def variants(value: object) -> list[object]:
    """The value as sent, and as a layer that %-decodes it once or twice would see it."""
    if not isinstance(value, str):
        return [value]
    once = unquote(value)
    return [value, once, unquote(once)]


# -- file inputs (LoadImage & co.) ---------------------------------------------------------------------

def check_file_input(tree: dict[str, str], value: object) -> None:
    try:
        ref = map_file_input(TENANT, value)
    except PathRefused:
        return
    assert isinstance(value, str)
    assert ref.folder in FOLDERS
    assert unquote(ref.comfy_value) == ref.comfy_value  # nothing left for a later layer to decode
    folder, path = comfy_file_input(tree, ref.comfy_value)
    assert folder == ref.folder, (value, ref)
    # What ComfyUI opens is inside the tenant's own folder (of whichever folder ComfyUI picks) ...
    assert inside(path, tenant_dir(tree, folder, TENANT)), (value, ref, path)
    assert_never_other_tenant(tree, path)
    # ... and what the guard checks on disk (symlinks resolved) never leaves it either.
    try:
        real = str(contained(Path(tree[ref.folder]), ref.relative, TENANT))
    except PathRefused:
        return
    assert inside(real, tenant_dir(tree, ref.folder, TENANT)), (value, ref, real)
    assert_never_other_tenant(tree, real)
    assert not inside(real, "/etc") and not inside(real, os.path.join(tree["root"], "outside"))


@fuzz(25_000)
@given(value=st.binary(max_size=24).map(decode_value))
def test_file_input_never_leaves_the_tenant(tree, value):
    for variant in variants(value):
        check_file_input(tree, variant)


@fuzz(4_000)
@given(value=st.binary(max_size=24).map(lambda data: decode_text(data) + pick(["[temp]", " [temp]", ""], len(data))))
def test_temp_file_input_never_leaves_the_tenant(tree, value):
    """Previews are written to temp/tenants/<t>/: `[temp]` names follow the same rule as input and output."""
    for variant in variants(value):
        check_file_input(tree, variant)


@fuzz(4_000)
@given(value=st.binary(max_size=24).map(decode_text))
def test_comfyui_opens_the_file_the_guard_checked(tree, value):
    """The rewritten value, parsed by ComfyUI, names exactly FileRef.folder / FileRef.relative."""
    for variant in variants(value):
        try:
            ref = map_file_input(TENANT, variant)
        except PathRefused:
            continue
        opened = comfy_file_input(tree, ref.comfy_value)
        assert opened == (ref.folder, os.path.normpath(os.path.join(tree[ref.folder], ref.relative))), \
            (variant, ref, opened)


@fuzz(2_000)
@given(name=st.text(alphabet=st.characters(categories=["Cs", "Ll", "Po"]), min_size=1, max_size=8))
def test_every_accepted_name_can_be_checked_on_disk(tree, name):
    """A name JSON can carry (lone surrogates included) is refused, or contained() can resolve it."""
    try:
        ref = map_file_input(TENANT, name)
    except PathRefused:
        return
    with contextlib.suppress(PathRefused):
        contained(Path(tree[ref.folder]), ref.relative, TENANT)


# -- output prefixes (SaveImage & co.) -----------------------------------------------------------------

TOKENS = ["%width%", "%height%", "%year%", "%month%", "%day%", "%hour%", "%minute%", "%second%", "%date:yyyy%",
          "%width", "width%", "%%width%%", "%2e", "%2f", "%year%2e%2e", "%2%width%e", "%%year%2e"]
PREFIX_PARTS = TOKENS + SEGMENTS + SEPARATORS


def decode_prefix(data: bytes) -> object:
    """Either tokens, segments and separators run together, or any value."""
    if data and data[0] % 3 == 0:
        return "".join(pick(PREFIX_PARTS, byte) for byte in data[1:])
    return decode_value(data[1:])


@fuzz(25_000)
@given(prefix=st.binary(max_size=24).map(decode_prefix))
def test_output_prefix_saves_inside_the_tenants_output(tree, prefix):
    output = tree["output"]
    own = tenant_dir(tree, "output", TENANT)
    width, height = len(repr(prefix)) * 7919 % 100_003, len(repr(prefix)) * 104_729 % 2**31  # digits either way
    for variant in variants(prefix):
        try:
            mapped = map_output_prefix(TENANT, variant)
        except PathRefused:
            continue
        assert isinstance(mapped, str) and mapped.startswith(f"tenants/{TENANT}/")
        full_output_folder, filename = comfy_save_path(mapped, output, width, height)
        folder = os.path.normpath(full_output_folder)
        assert inside(folder, own), (variant, mapped, folder)
        assert filename not in ("", ".", ".."), (variant, mapped)
        first_file = os.path.normpath(os.path.join(full_output_folder, f"{filename}_00001_.png"))
        assert inside(first_file, own) and first_file != own, (variant, mapped, first_file)
        assert_never_other_tenant(tree, first_file)


# -- subfolders (/view, /upload/image) -----------------------------------------------------------------

def decode_subfolder_case(data: bytes) -> tuple[object, str, str]:
    """(subfolder, filename, folder type): the first byte picks the type, the second where to split."""
    kind = pick(list(FOLDERS), data[0] if data else 0)
    rest = data[2:]
    split = (data[1] if len(data) > 1 else 0) % (len(rest) + 1)
    return decode_value(rest[:split]), decode_text(rest[split:]), kind


@fuzz(25_000)
@given(case=st.binary(max_size=40).map(decode_subfolder_case))
def test_subfolder_keeps_view_and_upload_inside_the_tenant(tree, case):
    subfolder, filename, kind = case
    for variant in variants(subfolder):
        try:
            real = map_subfolder(TENANT, variant)
        except PathRefused:
            continue
        # The real subfolder reads back as the tenant's own name for it, and is nobody else's.
        assert virtual_subfolder(TENANT, real) == clean_name(variant or "")
        assert virtual_subfolder(OTHER, real) is None
        assert virtual_subfolder("ab", real) is None
        # /view: ComfyUI refuses a leading / and any `..` in the filename, then keeps its basename.
        name, annotated = annotated_filepath(filename)
        if name and name[0] != "/" and ".." not in name:
            folder = annotated or kind
            output_dir = os.path.join(tree[folder], real)
            assert os.path.commonpath((os.path.abspath(output_dir), tree[folder])) == tree[folder]
            file = os.path.normpath(os.path.join(output_dir, os.path.basename(name)))
            assert inside(file, tenant_dir(tree, folder, TENANT)), (variant, real, filename, file)
            assert_never_other_tenant(tree, file)
        # /upload/image: the guard cleans the upload's own filename; ComfyUI joins it to the subfolder.
        try:
            upload_name = clean_name(filename)
        except PathRefused:
            continue
        filepath = os.path.abspath(os.path.join(tree[kind], os.path.normpath(real), upload_name))
        assert inside(filepath, tenant_dir(tree, kind, TENANT)), (variant, real, filename, filepath)
        assert_never_other_tenant(tree, filepath)


# -- contained(): symlinks resolved --------------------------------------------------------------------

# Names that never lead out of a's folder, wherever in it they are used.
ORDINARY = ["sub", "inside_link", "deep", "up", "cat.png", "dog.png", "nope", "new.png", ".", "", "...", " x",
            "loop", "é"]
# Names that exist in b's folder, /etc or elsewhere outside, but never climb back into a's folder.
BEYOND = ["secret.png", "secret.txt", "passwd", "hosts", "sub", "deep", "nope", ".", "", ".."]
ANYTHING = ORDINARY + BEYOND + ["..", "..", "tenants", "a", "b", "ab", "input", "output", "%2e%2e", "x\\..",
                                *LINKS_OUT_OF_A, *LINKS_OUT_OF_SUB]
CONTAINED_LEADS = ["", "tenants/a/", "tenants/a/", "tenants/a/sub/", "tenants/", "tenants/b/", "tenants/ab/", "../",
                   "/etc/", "tenants/a/../b/", "/", "tenants/a/to_b/../"]
# (a path to a's folder or to its sub/, a link there that leads out of a's folder)
INTO_A = ["", "./", "sub/up/", "inside_link/up/", "sub/deep/../up/", "inside_link/up/sub/up/"]
INTO_SUB = ["sub/", "inside_link/", "sub/up/sub/", "inside_link/./", "sub/deep/../"]
LINKS_OUT = [(via, link) for via in INTO_A for link in LINKS_OUT_OF_A] + \
            [(via, link) for via in INTO_SUB for link in LINKS_OUT_OF_SUB]


@fuzz(10_000)
@given(data=st.binary(max_size=12))
def test_contained_answers_only_paths_under_the_tenant(tree, data):
    folder = pick(["input", "output"], data[0] if data else 0)
    relative = pick(CONTAINED_LEADS, data[1] if len(data) > 1 else 0) + "/".join(pick(ANYTHING, b) for b in data[2:])
    try:
        real = contained(Path(tree[folder]), relative, TENANT)
    except PathRefused:
        return
    assert inside(str(real), tenant_dir(tree, folder, TENANT)), (relative, real)
    opened = os.path.join(tree[folder], relative)
    if os.path.exists(opened):  # the answer is the very file the OS opens for that name
        assert os.path.samefile(real, opened), (relative, real)
    assert_never_other_tenant(tree, str(real))


@fuzz(5_000)
@given(data=st.binary(max_size=10))
def test_contained_accepts_ordinary_paths(tree, data):
    folder = pick(["input", "output"], data[0] if data else 0)
    relative = f"tenants/{TENANT}/" + "/".join(pick(ORDINARY, b) for b in data[1:])
    real = contained(Path(tree[folder]), relative, TENANT)  # no PathRefused
    assert inside(str(real), tenant_dir(tree, folder, TENANT)), (relative, real)


@fuzz(5_000)
@given(data=st.binary(min_size=2, max_size=8))
def test_contained_refuses_paths_through_a_symlink_out_of_the_tenant(tree, data):
    folder = pick(["input", "output"], data[0])
    via, link = pick(LINKS_OUT, data[1])
    tail = [pick(BEYOND, b) for b in data[2:]]
    relative = f"tenants/{TENANT}/{via}{link}" + "".join("/" + part for part in tail)
    with pytest.raises(PathRefused):
        contained(Path(tree[folder]), relative, TENANT)
    # Sent as the tenant's own file input, the same name passes the text checks and is refused on disk.
    if ".." not in via:
        ref = map_file_input(TENANT, via + link + "".join("/" + part for part in tail if part != ".."))
        with pytest.raises(PathRefused):
            contained(Path(tree[ref.folder]), ref.relative, TENANT)
