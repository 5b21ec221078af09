"""Where the audit hook finds a path a node names: files right under /proc pass as named (ComfyUI reads
/proc/meminfo between every two nodes), anything that could lead elsewhere is resolved first."""

from __future__ import annotations

import os

from tenancy.comfy.execution import file_watch
from tenancy.comfy.execution.tenant_execution import Execution
from tenancy.confinement import READ, Layout, decide


def test_files_right_under_proc_pass_as_named_and_links_out_of_proc_are_still_followed(tmp_path):
    root = os.path.realpath(tmp_path)
    other = os.path.join(root, "output", "tenants", "b", "x.png")
    os.makedirs(os.path.dirname(other))
    open(other, "wb").close()
    layout = Layout({f: os.path.join(root, f) for f in ("input", "output", "temp")},
                    {"user": os.path.join(root, "user")}, {"models": os.path.join(root, "models")})
    execution = Execution(None, "a", None, {}, layout)

    assert file_watch._located(execution, "/proc/meminfo", None) == "/proc/meminfo"
    assert decide(layout, "a", "/proc/meminfo", READ) is None
    behind_proc = file_watch._located(execution, "/proc/self/root" + other, None)  # a magic link back to /
    assert behind_proc == other and decide(layout, "a", behind_proc, READ) is not None
    for climbing in ("/proc/..", "/proc/self/.."):
        assert file_watch._located(execution, climbing, None) == os.path.realpath(climbing)
