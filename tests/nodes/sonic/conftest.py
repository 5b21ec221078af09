"""Access to the Sonic parity fixtures, test media and checkpoint manifests for the Sonic tests.

The parity root comes from `PARITY_FIXTURES` (default `tests/fixtures/parity`); every size, step count,
seed and tolerance is read from the fixture files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nodes.sonic.config import SonicSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
MEDIA_DIR = REPO_ROOT / "tests" / "fixtures" / "media"
MANIFEST_DIR = REPO_ROOT / "tests" / "fixtures" / "manifests" / "sonic"


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """The tiny parity models are all per-op overhead: one intra-op thread is as fast on an idle machine
    and avoids OpenMP's spin-waiting collapse (10x slower) when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def parity_root() -> Path:
    root = Path(os.environ.get("PARITY_FIXTURES", "tests/fixtures/parity"))
    return root if root.is_absolute() else REPO_ROOT / root


@dataclass
class ParityFixture:
    """One fixture folder: its `fixture.json`, arrays and referenced media."""

    path: Path
    meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.meta = json.loads((self.path / "fixture.json").read_text(encoding="utf-8"))

    def json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / name) as data:
            return {key: data[key] for key in data.files}

    def tolerance(self, key: str | None = None) -> dict[str, float]:
        entry = self.meta["tolerance"] if key is None else self.meta["tolerance"][key]
        return {"atol": float(entry["atol"]), "rtol": float(entry.get("rtol", 0.0))}

    def precondition(self, pattern: str) -> int:
        """An integer the fixture states only in its preconditions text, e.g. `step = (\\d+)`."""
        for line in self.meta["preconditions"]:
            found = re.search(pattern, line)
            if found:
                return int(found.group(1))
        raise KeyError(f"no precondition matches {pattern!r}")

    def media(self, reference: dict[str, str]) -> Path:
        """A file the fixture names: relative to its folder, else to the set's root, else our media copy
        (the public set's `../testdata/` is not shipped)."""
        relative = reference["path"]
        candidates = [self.path / relative, self.path.parent / relative, MEDIA_DIR / Path(relative).name]
        candidate = next((c for c in candidates if c.is_file()), candidates[-1])
        digest = hashlib.sha256(candidate.read_bytes()).hexdigest()
        assert digest == reference["sha256"], f"{candidate} is not the file the fixture was made from"
        return candidate


@pytest.fixture(scope="session")
def parity():
    """`parity(name)` -> the `ParityFixture` of folder `name` under the parity root."""
    root, loaded = parity_root(), {}

    def get(name: str) -> ParityFixture:
        if name not in loaded:
            loaded[name] = ParityFixture(root / name)
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def manifest():
    def read(relative: str) -> dict[str, Any]:
        return json.loads((MANIFEST_DIR / relative).read_text(encoding="utf-8"))

    return read


def _read_wav(path: Path) -> torch.Tensor:
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


def _read_image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0)


@pytest.fixture(scope="session")
def read_wav():
    """Mono 16-bit PCM WAV -> float32 samples in [-1, 1) (what librosa returns for a 16 kHz file)."""
    return _read_wav


@pytest.fixture(scope="session")
def read_image():
    """RGB image file -> ComfyUI `(H, W, 3)` float32 in [0, 1]."""
    return _read_image


@pytest.fixture(scope="session")
def pipeline_call(parity) -> dict[str, Any]:
    """How the denoise fixture called upstream's pipeline (steps, scales, window settings)."""
    return parity("denoise").meta["pipeline_call"]


@pytest.fixture(scope="session")
def denoise_settings(pipeline_call) -> SonicSettings:
    """`SonicSettings` with the constants of `pipeline_call`."""
    call = pipeline_call
    return SonicSettings(
        fps=call["fps"],
        frames_per_batch=call["frames_per_batch"],
        overlap=call["overlap"],
        shift_offset=call["shift_offset"],
        decode_chunk_size=call["decode_chunk_size"],
        appearance_guidance=(call["min/max_guidance_scale1"],) * 2,
        audio_guidance=(call["min/max_guidance_scale2"],) * 2,
        i2i_noise_strength=call["i2i_noise_strength"],
        noise_aug_strength=call["noise_aug_strength"],
    )
