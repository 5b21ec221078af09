"""comfyui-tenancy: Sonic and GLM-TTS nodes, and the guard that makes one ComfyUI multi-tenant.

Inside ComfyUI this installs the guard into the running PromptServer; imported anywhere else it does
nothing beyond exporting the node mappings, and never imports ComfyUI.
"""

import sys

WEB_DIRECTORY = "web"
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


def _running_prompt_server():
    # ComfyUI imports its `server` module and builds PromptServer before it loads custom nodes.
    server = sys.modules.get("server")
    prompt_server = getattr(server, "PromptServer", None)
    return getattr(prompt_server, "instance", None)


# ComfyUI imports this folder as a package. pytest may import this file on its own (as the setup module of
# the folder's package, when the folder's name is no identifier): then there is nothing to export.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WARMUPS

    if _running_prompt_server() is not None:
        from .nodes.shared_comfy.model_folders import register as _register_model_folders
        from .tenancy.bootstrap import MODEL_FOLDERS
        from .tenancy.comfy.install import install

        _register_model_folders(MODEL_FOLDERS)
        install(_running_prompt_server(), WARMUPS, NODE_CLASS_MAPPINGS.values())

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
