"""Refusals: a stable reason code, a message in words, and ComfyUI's error shape so editors show them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Refusal(Exception):
    status: int
    reason: str
    message: str
    node_errors: dict = field(default_factory=dict)
    retry_after: float | None = None
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def body(self) -> dict:
        """`{"error": {...}, "node_errors": {...}}` as ComfyUI's own /prompt answers."""
        error = {"type": self.reason, "message": self.message, "details": self.details(), "extra_info": self.extra}
        return {"error": error, "node_errors": self.node_errors}

    def details(self) -> str:
        for node in self.node_errors.values():
            for err in node.get("errors", []):
                return err.get("details", "")
        return ""


def node_refusal(status: int, reason: str, node_id: str, class_type: str, input_name: str | None,
                 message: str) -> Refusal:
    """A refusal pointing at one node (and input), which the graph editor highlights."""
    where = f"{input_name} - " if input_name else ""
    error = {"type": reason, "message": message, "details": f"{where}{message}",
             "extra_info": {"input_name": input_name} if input_name else {}}
    node_errors = {str(node_id): {"errors": [error], "dependent_outputs": [], "class_type": class_type}}
    summary = f"node {node_id} ({class_type})" + (f", input {input_name}" if input_name else "") + f": {message}"
    return Refusal(status, reason, summary, node_errors)


def rate_limited(wait: float) -> Refusal:
    return Refusal(429, "rate_limited", f"too many requests; retry in {wait:.1f} s", retry_after=wait)
