"""Per-tenant TTS profile (`tts.yaml`): pronunciation dictionary, sampling defaults and limits.

A global profile in the tenancy folder and one per tenant are read, validated and merged (tenant wins,
dictionary entries are added on top of the global ones); a missing file simply contributes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..glm_tts.g2p import parse_dictionary

PROFILE_FILE = "tts.yaml"
RATE_RANGE = (8000, 96000)


class ProfileError(ValueError):
    reason = "tts_profile_invalid"

    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"tts_profile_invalid: {source}: `{key}` {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class Sampling:
    top_p: float = 0.8
    top_k: int = 25
    temperature: float = 1.0
    ras_window: int = 10


@dataclass(frozen=True)
class TtsProfile:
    dictionary: Mapping[str, str] = field(default_factory=dict)  # {"surface": "replacement"}
    sampling: Sampling = Sampling()
    max_text_chars: int = 5000
    sample_rates: tuple[int, ...] = (24000,)
    delete_prompt_audio: bool = False
    sources: tuple[str, ...] = ()  # the files it was read from

    def fingerprint(self) -> str:
        """Changes whenever anything that shapes the output changes (for ComfyUI's cache keys)."""
        body = {k: v for k, v in asdict(self).items() if k != "sources"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def load_profile(global_path: Path, tenant_path: Path | None = None) -> TtsProfile:
    """The global profile, overridden by the tenant's when there is one."""
    return merge(read_layer(global_path), read_layer(tenant_path) if tenant_path else {})


def read_layer(path: Path) -> dict[str, Any]:
    """The validated settings one `tts.yaml` sets (empty when the file does not exist)."""
    import yaml

    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(str(path), "(file)", f"is not valid YAML ({exc})") from None
    layer = parse_layer(raw or {}, path.parent, str(path))
    layer["sources"] = (str(path),)
    return layer


def parse_layer(raw: Any, base_dir: Path, source: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ProfileError(source, "(top level)", "must be a mapping of settings")
    known = {f.name for f in fields(TtsProfile)} - {"sources"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProfileError(source, unknown[0], f"is not a setting (use: {', '.join(sorted(known))})")
    layer: dict[str, Any] = {}
    if "dictionary" in raw:
        layer["dictionary"] = _dictionary(raw["dictionary"], base_dir, source)
    if "sampling" in raw:
        layer["sampling"] = _sampling(raw["sampling"], source)
    if "max_text_chars" in raw:
        layer["max_text_chars"] = _int(raw["max_text_chars"], source, "max_text_chars", minimum=1)
    if "sample_rates" in raw:
        layer["sample_rates"] = _rates(raw["sample_rates"], source)
    if "delete_prompt_audio" in raw:
        if not isinstance(raw["delete_prompt_audio"], bool):
            raise ProfileError(source, "delete_prompt_audio", "must be true or false")
        layer["delete_prompt_audio"] = raw["delete_prompt_audio"]
    return layer


def merge(*layers: Mapping[str, Any]) -> TtsProfile:
    profile = TtsProfile()
    for layer in layers:
        values = dict(layer)
        if "dictionary" in values:
            values["dictionary"] = {**profile.dictionary, **values["dictionary"]}
        if "sampling" in values:
            values["sampling"] = replace(profile.sampling, **values["sampling"])
        values["sources"] = profile.sources + tuple(values.get("sources", ()))
        profile = replace(profile, **values)
    return profile


def _dictionary(value: Any, base_dir: Path, source: str) -> dict[str, str]:
    """A jsonl file next to the profile (upstream's G2P_replace_dict format), a mapping, or a list of them."""
    if isinstance(value, str):
        path = _inside(base_dir, value, source)
        try:
            with open(path, encoding="utf-8") as f:
                return parse_dictionary(f)
        except OSError as exc:
            raise ProfileError(source, "dictionary", f"file {value!r} cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise ProfileError(source, "dictionary", f"file {value!r}: {exc}") from None
    entries = value if isinstance(value, list) else [value]
    try:
        return parse_dictionary(json.dumps(entry, ensure_ascii=False) for entry in entries)
    except ValueError as exc:
        raise ProfileError(source, "dictionary", str(exc)) from None


def _inside(base_dir: Path, relative: str, source: str) -> Path:
    base = base_dir.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ProfileError(source, "dictionary", f"path {relative!r} leaves the profile's folder")
    return path


def _sampling(value: Any, source: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(source, "sampling", "must be a mapping (top_p, top_k, temperature, ras_window)")
    known = {f.name for f in fields(Sampling)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ProfileError(source, f"sampling.{unknown[0]}", f"is not a setting (use: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    if "top_p" in value:
        out["top_p"] = _float(value["top_p"], source, "sampling.top_p", 0.0, 1.0, open_low=True)
    if "temperature" in value:
        out["temperature"] = _float(value["temperature"], source, "sampling.temperature", 0.0, 10.0, open_low=True)
    for name in ("top_k", "ras_window"):
        if name in value:
            out[name] = _int(value[name], source, f"sampling.{name}", minimum=1)
    return out


def _float(value: Any, source: str, key: str, low: float, high: float, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(source, key, f"must be a number, got {value!r}")
    if value > high or value < low or (open_low and value == low):
        raise ProfileError(source, key, f"must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _int(value: Any, source: str, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProfileError(source, key, f"must be a whole number >= {minimum}, got {value!r}")
    return value


def _rates(value: Any, source: str) -> tuple[int, ...]:
    rates = value if isinstance(value, list) else [value]
    low, high = RATE_RANGE
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or not low <= r <= high for r in rates):
        raise ProfileError(source, "sample_rates", f"must list sample rates in Hz between {low} and {high}, "
                                                   f"got {value!r}")
    return tuple(dict.fromkeys(rates))
