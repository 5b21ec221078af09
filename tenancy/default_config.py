"""The commented default config that `python -m tenancy init` writes: every setting of `tenancy.config` with its
default and its documentation, in the order the dataclasses declare them."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from .config import Config, is_dataclass_type, is_optional


def default_text(store: str | None = None) -> str:
    """The commented default config that `init` writes."""
    lines = ["# comfyui-tenancy configuration. Every key is optional; shown with its default.",
             "# Relative paths are taken from this file's folder. Check with `python -m tenancy doctor`.", ""]
    lines += _section_text(Config, "", {"store": store} if store else {})
    return "\n".join(lines) + "\n"


def _section_text(cls: type, indent: str, overrides: Mapping) -> list[str]:
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        doc = f.metadata.get("doc", "")
        if f.metadata.get("choices"):
            doc += f" ({' | '.join(f.metadata['choices'])})"
        out.append(f"{indent}# {doc}")
        hint = hints[f.name]
        if is_dataclass_type(hint) and is_optional(hint):
            inner = next(a for a in hint.__args__ if a is not type(None))
            out.append(f"{indent}{f.name}: null")
            out.append(f"{indent}# {f.name}:")
            out += [f"{indent}#{line[len(indent):]}" if line.strip() else line
                    for line in _section_text(inner, indent + "  ", {})]
        elif is_dataclass_type(hint):
            out.append(f"{indent}{f.name}:")
            out += _section_text(hint, indent + "  ", {})
        else:
            value = overrides.get(f.name, f.default_factory() if callable(f.default_factory) else f.default)
            out += [indent + line for line in _dump(f.name, value).splitlines()]
    return out


def _dump(name: str, value: Any) -> str:
    if isinstance(value, dict) and value:
        return yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False).rstrip()
    flow = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return f"{name}: {flow.removesuffix('...').strip()}"
