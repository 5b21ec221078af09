"""GLM-TTS text normaliser: time per 1,000 characters, zh and en, an older front end and this one side by side.

The older front end (default: the commit before the grammar-based normaliser) is read from git into a
temporary package, so both run in this process on the same texts, alternating rounds:

    .venv/bin/python scripts/bench_glm_tts_frontend.py [--old-rev 1a62626] [--rounds 7]

The texts are the inputs of the public front-end fixture cases (zh: the cases with Chinese), repeated.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OLD_FILES = ("frontend.py", "normalize_zh.py", "normalize_en.py")


def load_old(rev: str, folder: Path):
    package = folder / "old_glm_frontend"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name in OLD_FILES:
        text = subprocess.run(["git", "show", f"{rev}:nodes/glm_tts/{name}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(folder))
    return importlib.import_module("old_glm_frontend.frontend").text_normalize


def per_thousand(normalize, texts: list[str]) -> float:
    chars = sum(len(t) for t in texts)
    start = time.perf_counter()
    for text in texts:
        normalize(text)
    return (time.perf_counter() - start) / chars * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-rev", default="1a62626")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cases = json.loads((ROOT / "tests/fixtures/parity/frontend/cases.json").read_text(encoding="utf-8"))
    inputs = [c["input"] for c in cases["text_normalize"]] + [c["input"] for c in cases["split_and_pipeline"]]
    texts = {"zh": [t for t in inputs if any("\u4e00" <= ch <= "\u9fff" for ch in t)],
             "en": [t for t in inputs if not any("\u4e00" <= ch <= "\u9fff" for ch in t)]}
    from nodes.glm_tts.frontend import text_normalize as new

    with tempfile.TemporaryDirectory() as tmp:
        old = load_old(args.old_rev, Path(tmp))
        start = time.perf_counter()
        new("预热 warm up 123")
        print(f"new: first call (loads the grammars) {1000 * (time.perf_counter() - start):.0f} ms")
        old("预热 warm up 123")
        for lang, sample in texts.items():
            batch = sample * args.repeat
            timings = {"old": [], "new": []}
            for _ in range(args.rounds):
                timings["old"].append(per_thousand(old, batch))
                timings["new"].append(per_thousand(new, batch))
            o, n = statistics.median(timings["old"]), statistics.median(timings["new"])
            chars = sum(len(t) for t in batch)
            print(f"{lang}: {len(batch)} texts, {chars} chars; per 1,000 chars  old {1000 * o:.2f} ms  "
                  f"new {1000 * n:.2f} ms  new/old {n / o:.2f}  (median of {args.rounds})")


if __name__ == "__main__":
    main()
