"""Progress and interruption for model loops: ComfyUI's ProgressBar, and its interrupt flag checked per step."""

from __future__ import annotations

from collections.abc import Callable


def comfy_progress(total: int, node_id: str | None = None) -> Callable[[int, int], None]:
    """A `callback(done, total)` for our pipelines: advances the node's bar and raises if the user interrupted."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total, node_id=node_id) if node_id else comfy.utils.ProgressBar(total)

    def callback(done: int, steps: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, steps)

    return callback
