"""Plain torch pieces both model packages use: reading checkpoint files, resampling audio (no ComfyUI)."""
