"""CAM++ speaker embedding through onnxruntime (upstream ships only the ONNX export, campplus.onnx).

onnxruntime is imported on first use, so the rest of GLM-TTS works without it (e.g. from a saved voice).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

SpeakerEmbedder = Callable[[torch.Tensor], torch.Tensor]
"""Maps CAM++ input features (1, frames, 80) to a (1, 192) speaker embedding."""


def campplus_embedder(onnx_path: str | Path) -> SpeakerEmbedder:
    """An embedder running `onnx_path` on CPU with one intra-op thread, as upstream configures it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise RuntimeError("onnxruntime_missing: `pip install onnxruntime` to clone a new voice "
                           "(or load a saved voice)") from err
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def embed(features: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {input_name: features.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).reshape(1, -1).float()

    return embed
