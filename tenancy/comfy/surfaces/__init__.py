"""ComfyUI's own routes as a tenant gets them: each surface confines one route (its body, its answer) before
and after ComfyUI's handler runs."""
