"""comfyui-tenancy's guard: identity, isolation, admission and audit for one shared ComfyUI.

Everything here except `tenancy.comfy` is plain Python over plain data and never imports ComfyUI.
"""
