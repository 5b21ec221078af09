"""A cheap prompt that saves an image: EmptyImage -> SaveImage, a colour of its own each time (ComfyUI's cache
would skip a repeat)."""

from __future__ import annotations

import random

from .client import ComfyClient


def save_image_workflow(prefix: str, width: int = 64, height: int = 48) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1,
                                                          "color": random.randrange(0x1000000)}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def saved_image(tenant: ComfyClient, prefix: str) -> dict:
    """Run it and wait: the saved image's ref (filename, subfolder, type) and its prompt id."""
    entry = tenant.run(save_image_workflow(prefix))
    assert entry["status"]["status_str"] == "success", entry["status"]
    return {**entry["outputs"]["2"]["images"][0], "prompt_id": entry["prompt"][1]}
