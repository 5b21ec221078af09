"""Who did what: one JSON line per decision in a rotating file; credentials are never written."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key", "cookie", "key")


class AuditLog:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"tenancy.audit.{path}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        if not self.logger.handlers:
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                           encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
        self.path = path

    def record(self, **entry: Any) -> None:
        entry = {"time": round(time.time(), 3), **{k: redact(k, v) for k, v in entry.items() if v is not None}}
        self.logger.info(json.dumps(entry, default=str, separators=(",", ":")))


def redact(key: str, value: Any) -> Any:
    if any(word in key.lower() for word in SECRET_WORDS) and key not in ("key_id", "credential"):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(key, v) for v in value]
    return value
