"""The adapter: the only code that touches ComfyUI (PromptServer, folder_paths, execution events).

Everything it decides, it asks the pure core; it only translates between aiohttp/ComfyUI and plain data.
"""
