"""GLM-TTS inside ComfyUI: the node classes (`nodes`), the models in ComfyUI (`loading`), each tenant's voices
and TTS profile (`voices`, `sealed_voice`, `profile`), and what a run reports (`diagnostics`).

The only code of the GLM-TTS family that touches ComfyUI or the guard; the model itself is `nodes.glm_tts`.
"""
