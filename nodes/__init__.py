"""The plugin's ComfyUI nodes: thin classes over the Sonic and GLM-TTS model packages.

`sonic/`, `glm_tts/` and `shared/` are plain torch (no ComfyUI, no guard); `*_comfy/` is the glue, the only code
here that touches ComfyUI, and `shared_comfy/guard.py` its one door to the guard. pyproject.toml's import-linter
contracts keep both rules.
"""

from .glm_tts_comfy.nodes import NODE_CLASS_MAPPINGS as _GLM_TTS_CLASSES
from .glm_tts_comfy.nodes import NODE_DISPLAY_NAME_MAPPINGS as _GLM_TTS_NAMES
from .glm_tts_comfy.nodes import warm_up as _warm_up_glm_tts
from .sonic_comfy.nodes import NODE_CLASS_MAPPINGS as _SONIC_CLASSES
from .sonic_comfy.nodes import NODE_DISPLAY_NAME_MAPPINGS as _SONIC_NAMES
from .sonic_comfy.nodes import warm_up as _warm_up_sonic

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
NODE_CLASS_MAPPINGS.update(_SONIC_CLASSES)
NODE_DISPLAY_NAME_MAPPINGS.update(_SONIC_NAMES)
NODE_CLASS_MAPPINGS.update(_GLM_TTS_CLASSES)
NODE_DISPLAY_NAME_MAPPINGS.update(_GLM_TTS_NAMES)

# Preloaders the guard runs at start for the families named in the config's `warmup:`.
WARMUPS = {"sonic": _warm_up_sonic, "glm_tts": _warm_up_glm_tts}
