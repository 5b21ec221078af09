"""GLM-TTS (zai-org/GLM-TTS) voice cloning in plain torch: text front end, LM, flow, HiFT, tokenizers.

Entry points: `load_glm_tts`, `make_voice`, `synthesize`; no ComfyUI imports anywhere in this package.
"""

from .pipeline import GlmTtsModels, GlmTtsPaths, load_glm_tts, make_voice, synthesize
from .voice import Voice

__all__ = ["GlmTtsModels", "GlmTtsPaths", "Voice", "load_glm_tts", "make_voice", "synthesize"]
