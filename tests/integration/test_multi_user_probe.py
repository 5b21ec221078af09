"""The guard starts only where ComfyUI honours `comfy-user` (its multi-user mode): the start-up probe against
ComfyUI's own UserManager (imported from the ComfyUI under test, no server), with the mode off and on."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tenancy.comfy.surfaces.user_data import check_multi_user
from tests.harness.comfyui import comfyui_root

COMFYUI = comfyui_root()
pytestmark = pytest.mark.skipif(COMFYUI is None, reason="no ComfyUI checkout (set COMFYUI_DIR or run make setup)")


@pytest.fixture
def comfy_users(tmp_path, monkeypatch):
    """ComfyUI's UserManager over a fresh user folder, and ComfyUI's parsed arguments."""
    if str(COMFYUI) not in sys.path:
        sys.path.append(str(COMFYUI))  # appended: our own `nodes` package stays ours
    import folder_paths
    from app.user_manager import UserManager
    from comfy.cli_args import args

    monkeypatch.setattr(folder_paths, "user_directory", str(tmp_path / "user"))
    monkeypatch.setattr(args, "multi_user", False)
    return SimpleNamespace(user_manager=UserManager()), args


def test_the_probe_refuses_a_comfyui_that_ignores_comfy_user(comfy_users, monkeypatch):
    server, args = comfy_users
    with pytest.raises(RuntimeError, match="comfy-user"):
        check_multi_user(server)
    monkeypatch.setattr(args, "multi_user", True)  # what the guard turns on at start-up
    check_multi_user(server)
    assert not [user for user in server.user_manager.users if "probe" in user]  # the probe user is gone again


def test_the_probe_refuses_a_server_it_cannot_ask():
    with pytest.raises(RuntimeError, match="multi-user"):
        check_multi_user(SimpleNamespace())
