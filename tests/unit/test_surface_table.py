"""The surfaces are declared next to them, keyed like the route table."""

from __future__ import annotations

from tenancy.comfy.surfaces import SURFACES
from tenancy.routes import TABLE


def test_every_surface_is_keyed_like_a_route_of_the_route_table():
    """A surface under a key the route table does not have would never be reached (the middleware looks surfaces
    up by the route table's key)."""
    assert set(SURFACES) <= set(TABLE)
