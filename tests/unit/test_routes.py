"""tenancy.routes: one table over (method, normalised pattern), deny by default."""

from __future__ import annotations

import itertools

import pytest

from tenancy.config import from_mapping
from tenancy.routes import (
    ADMIN,
    ADMIN_PREFIXES,
    CLASSES,
    PUBLIC,
    TABLE,
    TENANT,
    allowed,
    normalise,
    route_class,
)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def concrete(method: str) -> str:
    return "POST" if method == "*" else method


# -- the table -----------------------------------------------------------------------------------------

def test_table_is_keyed_by_normalised_patterns_and_known_classes():
    for (method, pattern), cls in TABLE.items():
        assert method in ("*", "GET", "POST", "PUT", "PATCH", "DELETE"), method
        assert pattern.startswith("/") and normalise(pattern) == pattern, pattern
        assert cls in CLASSES, (method, pattern)


def test_every_listed_route_is_explicit():
    for (method, pattern), cls in TABLE.items():
        assert route_class(concrete(method), pattern) == (cls, True), (method, pattern)


# -- /x, /api/x, /api/api/x ----------------------------------------------------------------------------

def test_api_prefix_classifies_alike():
    for method, pattern in TABLE:
        expected = route_class(concrete(method), pattern)
        for spelling in (f"/api{pattern}", f"/api/api{pattern}"):
            assert route_class(concrete(method), spelling) == expected, spelling


def test_api_prefix_classifies_alike_for_unknown_and_admin_routes():
    for pattern in ("/my_plugin/x", "/manager/queue/start", "/tenancy/admin/tenants/a", "/free"):
        for method in METHODS:
            expected = route_class(method, pattern)
            assert route_class(method, "/api" + pattern) == expected
            assert route_class(method, "/api/api" + pattern) == expected


def test_normalise_drops_api_prefixes_only():
    assert normalise("/api") == "/"
    assert normalise("/api/") == "/"
    assert normalise("/api/api") == "/"
    assert normalise("/api/prompt") == "/prompt"
    assert normalise("/api/api/prompt") == "/prompt"
    assert normalise("/apix") == "/apix"
    assert normalise("/apis/prompt") == "/apis/prompt"
    assert normalise("/my_plugin/api/x") == "/my_plugin/api/x"


def test_api_root_is_the_editor():
    assert route_class("GET", "/api") == route_class("GET", "/") == (PUBLIC, True)


# -- placeholders --------------------------------------------------------------------------------------

def test_regex_placeholders_normalise():
    assert normalise("/history/{prompt_id:[0-9a-f-]+}") == "/history/{prompt_id}"
    assert normalise("/userdata/{file:.+}/move/{dest:.*}") == "/userdata/{file}/move/{dest}"
    assert normalise("/api/experiment/models/preview/{folder}/{path_index}/{filename:.*}") == \
        "/experiment/models/preview/{folder}/{path_index}/{filename}"
    assert normalise("/history/{prompt_id}") == "/history/{prompt_id}"


def test_regex_placeholders_classify_as_the_plain_ones():
    assert route_class("GET", "/api/history/{prompt_id:[0-9a-f-]+}") == (TENANT, True)
    assert route_class("POST", "/userdata/{file:.+}/move/{dest:.+}") == (TENANT, True)
    assert route_class("GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.*}") == (ADMIN, True)
    assert route_class("DELETE", "/tenancy/admin/{tail:.*}") == (ADMIN, True)


def test_regex_placeholder_with_braces_normalises():
    # aiohttp accepts one level of braces inside a placeholder's regex.
    assert normalise(r"/history/{prompt_id:[0-9a-f]{8}}") == "/history/{prompt_id}"
    assert route_class("GET", r"/history/{prompt_id:[0-9a-f]{8}}") == (TENANT, True)


# -- deny by default -----------------------------------------------------------------------------------

def test_unknown_patterns_are_admin_and_not_explicit():
    for method in METHODS:
        assert route_class(method, "/my_plugin/x") == (ADMIN, False)
        assert route_class(method, "/api/my_plugin/{id}") == (ADMIN, False)
    assert route_class("DELETE", "/prompt") == (ADMIN, False)  # only GET and POST are listed
    assert route_class("PUT", "/view") == (ADMIN, False)


def test_unmatched_request_is_admin_and_not_explicit():
    for method in METHODS:
        assert route_class(method, None) == (ADMIN, False)


def test_admin_prefixes_are_admin_and_explicit():
    for prefix in ADMIN_PREFIXES:
        for method in ("GET", "POST", "DELETE"):
            assert route_class(method, prefix + "anything") == (ADMIN, True)
            assert route_class(method, "/api" + prefix + "anything") == (ADMIN, True)
    assert route_class("PATCH", "/tenancy/admin/tenants/a/plan") == (ADMIN, True)
    assert route_class("GET", "/tenancy/admin/{tail}") == (ADMIN, True)


def test_prefix_lookalikes_are_not_admin_prefixes():
    assert route_class("GET", "/managerx/list") == (ADMIN, False)
    assert route_class("GET", "/manager") == (ADMIN, False)


def test_method_is_case_insensitive():
    assert route_class("get", "/view") == route_class("GET", "/view") == (TENANT, True)
    assert route_class("post", "/prompt") == (TENANT, True)


def test_head_is_treated_as_get():
    for method, pattern in TABLE:
        if method == "GET":
            assert route_class("HEAD", pattern) == route_class("GET", pattern), pattern
            assert route_class("head", "/api" + pattern) == route_class("GET", pattern), pattern
    assert route_class("HEAD", "/free") == (ADMIN, False)  # POST /free is listed, GET is not
    assert route_class("HEAD", "/my_plugin/x", {"GET /my_plugin/x": "public"}) == (PUBLIC, True)


# -- overrides from config -----------------------------------------------------------------------------

def test_override_opens_another_plugins_route():
    overrides = {"GET /my_plugin/x": "tenant"}
    assert route_class("GET", "/my_plugin/x", overrides) == (TENANT, True)
    assert route_class("GET", "/api/my_plugin/x", overrides) == (TENANT, True)
    assert route_class("POST", "/my_plugin/x", overrides) == (ADMIN, False)
    assert route_class("GET", "/my_plugin/y", overrides) == (ADMIN, False)


def test_override_from_config_wins(tmp_path):
    config = from_mapping({"routes": {"GET /my_plugin/x": "tenant", "GET /view": "admin",
                                      "* /my_plugin/{id}": "public", "POST /manager/queue/start": "tenant"}},
                          base_dir=tmp_path)
    overrides = config.routes
    assert route_class("GET", "/my_plugin/x", overrides) == (TENANT, True)
    assert route_class("GET", "/view", overrides) == (ADMIN, True)  # beats the table
    assert route_class("GET", "/view") == (TENANT, True)
    assert route_class("DELETE", "/my_plugin/{id:\\d+}", overrides) == (PUBLIC, True)
    assert route_class("POST", "/api/manager/queue/start", overrides) == (TENANT, True)  # beats the prefix rule


def test_method_specific_override_beats_star_override():
    overrides = {"* /my_plugin/p": "admin", "GET /my_plugin/p": "public"}
    assert route_class("GET", "/my_plugin/p", overrides) == (PUBLIC, True)
    assert route_class("POST", "/my_plugin/p", overrides) == (ADMIN, True)


def test_no_overrides_is_the_table():
    for overrides in (None, {}):
        assert route_class("GET", "/view", overrides) == (TENANT, True)
        assert route_class("GET", "/my_plugin/x", overrides) == (ADMIN, False)


# -- allowed() -----------------------------------------------------------------------------------------

ALLOWED = {
    # (class, authenticated, is_admin): allowed
    (PUBLIC, False, False): True,
    (PUBLIC, True, False): True,
    (PUBLIC, False, True): True,
    (PUBLIC, True, True): True,
    (TENANT, False, False): False,
    (TENANT, True, False): True,
    (TENANT, False, True): False,
    (TENANT, True, True): True,
    (ADMIN, False, False): False,
    (ADMIN, True, False): False,
    (ADMIN, False, True): True,
    (ADMIN, True, True): True,
}


@pytest.mark.parametrize(("cls", "authenticated", "is_admin"), sorted(ALLOWED))
def test_allowed_truth_table(cls, authenticated, is_admin):
    assert allowed(cls, authenticated, is_admin) is ALLOWED[(cls, authenticated, is_admin)]


def test_an_unknown_class_is_never_allowed():
    for authenticated, is_admin in itertools.product((False, True), repeat=2):
        assert allowed("root", authenticated, is_admin) is False
        assert allowed("", authenticated, is_admin) is False
        assert allowed("PUBLIC", authenticated, is_admin) is False
