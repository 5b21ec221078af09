"""The parity suite runs on any fixture set with the public set's schema (`PARITY_FIXTURES`).

A copy of tests/fixtures/parity gets new names for its runs and cases (in its JSON files and array keys) and
its input media moved next to the fixtures that read them (under new file names, so nothing is found by
the old name); the GLM-TTS and Sonic parity tests then collect and pass on that copy in a pytest subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLIC = REPO_ROOT / "tests" / "fixtures" / "parity"
MEDIA_DIR = REPO_ROOT / "tests" / "fixtures" / "media"
CHILD = "PARITY_HARNESS_CHILD"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(os.environ.get(CHILD)), reason="the copy's own run")]


def run_and_case_names(root: Path) -> dict[str, list[str]]:
    """Per fixture folder, the names its files give to runs and cases (read from the files)."""
    def meta(name: str) -> dict[str, Any]:
        return json.loads((root / name / "fixture.json").read_text(encoding="utf-8"))

    with np.load(root / "unet" / "io.npz") as unet:
        unet_cases = [k.removesuffix(".in.sample") for k in unet.files if k.endswith(".in.sample")]
    sampling = json.loads((root / "llm" / "sampling_cases.json").read_text(encoding="utf-8"))
    return {
        "llm": list(sampling["ar_runs"]),
        "flow": list(meta("flow")["inputs"]["cases"]),
        "speech_tokenizer": list(meta("speech_tokenizer")["inputs"]["cases"]),
        "unet": unet_cases,
    }


def rename(folder: Path, names: dict[str, str]) -> None:
    """Every JSON text and .npz key of `folder`, with each name replaced where it stands as a name."""
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                         + r")(?![A-Za-z0-9])")
    for path in folder.rglob("*"):
        if path.suffix == ".json":
            path.write_text(pattern.sub(lambda m: names[m.group(1)], path.read_text(encoding="utf-8")),
                            encoding="utf-8")
        elif path.suffix == ".npz":
            with np.load(path) as data:
                arrays = {pattern.sub(lambda m: names[m.group(1)], k): data[k] for k in data.files}
            assert len(arrays) == len(data.files)
            np.savez(path, **arrays)


def media_references(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if {"path", "sha256"} <= node.keys() else []
        return found + [ref for value in node.values() for ref in media_references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in media_references(value)]
    return []


def move_media(root: Path) -> int:
    """Each fixture's media into its own folder, or (every other file) under the set's root; returns how many."""
    moved = 0
    for meta_path in sorted(root.glob("*/fixture.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for ref in media_references(meta):
            source = MEDIA_DIR / Path(ref["path"]).name
            if not source.is_file():
                continue
            new_name = f"moved-{meta_path.parent.name}-{source.name}"
            if moved % 2 == 0:
                target, ref["path"] = meta_path.parent / new_name, new_name
            else:
                target, ref["path"] = root / "shared-media" / new_name, f"shared-media/{new_name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            moved += 1
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return moved


@pytest.fixture(scope="module")
def renamed_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parity") / "another-set"
    shutil.copytree(PUBLIC, root)
    for folder, old_names in run_and_case_names(root).items():
        rename(root / folder, {old: f"renamed{i}x{folder}" for i, old in enumerate(old_names)})
    assert move_media(root) >= 4
    return root


def test_the_copy_has_new_names_and_no_media_under_the_old_names(renamed_set):
    names = run_and_case_names(renamed_set)
    public = run_and_case_names(PUBLIC)
    for folder, old_names in public.items():
        assert len(names[folder]) == len(old_names) and not set(names[folder]) & set(old_names), folder
    for meta_path in renamed_set.glob("*/fixture.json"):
        for ref in media_references(json.loads(meta_path.read_text(encoding="utf-8"))):
            assert not (MEDIA_DIR / Path(ref["path"]).name).exists(), ref["path"]


def test_the_parity_suite_collects_and_passes_on_another_fixture_set(renamed_set):
    env = {**os.environ, "PARITY_FIXTURES": str(renamed_set), CHILD: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/nodes/glm_tts", "tests/nodes/sonic", "-q", "-p", "no:cacheprovider",
         "-x", "-rs"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    tail = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert not [line for line in skipped if "parity fixture" in line or "empty parameter set" in line], tail
