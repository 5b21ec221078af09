"""Real processes for the tests: a ComfyUI with the plugin loaded, a redis-server, and an HTTP client."""
