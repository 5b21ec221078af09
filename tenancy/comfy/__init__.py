"""The adapter: the only code that touches ComfyUI (PromptServer, folder_paths, execution events).

Everything it decides, it asks the pure core; it only translates between aiohttp/ComfyUI and plain data.
By role: `install` puts the guard into the running server and builds its `services` once; `middleware` routes,
identifies, authorizes and dispatches every request; `surfaces/` confine ComfyUI's own routes per tenant;
`api/` is the plugin's own HTTP API under /tenancy/; `execution/` is where prompts run (accounting, the queue
index's feed, outputs to the bucket, the confinement of nodes); `context` is the nodes' one door to the guard.
"""
