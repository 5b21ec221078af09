"""ComfyUI-facing pieces both families' glue uses: AUDIO values, progress bars, model folders, the door to the guard.
"""
