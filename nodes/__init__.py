"""The plugin's ComfyUI nodes: thin classes over the Sonic and GLM-TTS model packages."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
