"""Sonic talking-head model code: one portrait + speech -> lip-synced video frames (pure torch, no ComfyUI).

Entry points: `load_sonic_models`, `preprocess`, `sample`, `interpolate`; face boxes from `detect_faces`.
"""

from .config import SonicSettings
from .crop import FaceBox
from .face_detect import Detection, detect_faces, largest_face
from .pipeline import (
    SonicCondition,
    SonicModels,
    SonicPaths,
    interpolate,
    load_rife,
    load_sonic_models,
    preprocess,
    sample,
)

__all__ = [
    "Detection",
    "FaceBox",
    "SonicCondition",
    "SonicModels",
    "SonicPaths",
    "SonicSettings",
    "detect_faces",
    "interpolate",
    "largest_face",
    "load_rife",
    "load_sonic_models",
    "preprocess",
    "sample",
]
