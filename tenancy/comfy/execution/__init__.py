"""Where prompts run: accounting around ComfyUI's queue and execution events, the queue index's feed, outputs to
the bucket, and the confinement of a tenant's nodes (name resolvers, cache keys and sets, the file watch)."""
