"""Shared helpers for the GLM-TTS fidelity tests: fixture roots, fixture.json, test media.

Every size, seed and tolerance comes from the fixture files; `PARITY_FIXTURES` selects another set.
"""

from __future__ import annotations

import hashlib
import json
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[3]
MEDIA_DIR = REPO_ROOT / "tests" / "fixtures" / "media"
MANIFEST_DIR = REPO_ROOT / "tests" / "fixtures" / "manifests" / "glm-tts"


class ParityFixtures:
    """The fixture set under `PARITY_FIXTURES` (default tests/fixtures/parity, relative to the repo)."""

    def __init__(self) -> None:
        root = Path(os.environ.get("PARITY_FIXTURES", "tests/fixtures/parity"))
        self.root = root if root.is_absolute() else REPO_ROOT / root

    def dir(self, name: str) -> Path:
        path = self.root / name
        if not (path / "fixture.json").exists():
            pytest.skip(f"parity fixture {name!r} not found under {self.root}")
        return path

    def meta(self, name: str) -> dict[str, Any]:
        return json.loads((self.dir(name) / "fixture.json").read_text(encoding="utf-8"))

    def npz(self, name: str, file: str) -> dict[str, np.ndarray]:
        with np.load(self.dir(name) / file) as data:
            return {k: data[k] for k in data.files}

    def collect(self, name: str, file: str) -> Any:
        """A fixture file read at collection time (for parametrising); None when the set lacks it."""
        path = self.root / name / file
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def media(self, name: str, spec: dict[str, Any]) -> Path:
        """Input media as fixture `name` records it: relative to its folder, else to the set's root, else
        our copy in tests/fixtures/media (the public set's `../testdata/` is not shipped)."""
        candidates = [self.root / name / spec["path"], self.root / spec["path"], MEDIA_DIR / Path(spec["path"]).name]
        path = next((c for c in candidates if c.is_file()), candidates[-1])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == spec["sha256"], f"{path} does not match the fixture's sha256"
        return path


def read_wav(path: Path) -> tuple[torch.Tensor, int]:
    """(channels, T) float32 from a PCM16 WAV, scaled by 1/32768 like torchaudio.load."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, "test media must be PCM16"
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return torch.from_numpy(pcm.reshape(-1, w.getnchannels()).T.copy()), w.getframerate()


@pytest.fixture(scope="session")
def parity() -> ParityFixtures:
    return ParityFixtures()


@pytest.fixture(scope="session")
def zh_prompt(parity: ParityFixtures) -> tuple[torch.Tensor, int]:
    """The Chinese prompt recording of the features and speech_tokenizer fixtures."""
    return read_wav(parity.media("features", parity.meta("features")["inputs"]["audio"]))


@pytest.fixture(scope="session")
def glm_manifest():
    """Loads a manifest copied from the shared checkpoint manifests, by upstream-relative path."""

    def load(relative: str) -> dict[str, Any]:
        return json.loads((MANIFEST_DIR / f"{relative}.manifest.json").read_text(encoding="utf-8"))

    return load
