"""The nodes' one door to the guard: `tenancy.comfy.context` (the tenant whose prompt runs, the tenancy folder,
the master secret, and the guard's rules for names and tenant folders).

No other module under nodes/ imports `tenancy`; the import-linter contract "Nodes reach the guard through one
module only" fails the suite when one does.
"""

try:  # inside ComfyUI the plugin folder is one package, the guard beside the nodes
    from ...tenancy.comfy import context
except ImportError:  # imported from the repository root (tests, scripts): `tenancy` is a top-level package
    from tenancy.comfy import context

__all__ = ["context"]
