"""The last line: an audit hook that refuses any file a node of a tenant's prompt opens, lists, removes or
renames outside the tenant's folders (`tenancy.confinement` decides)."""

from __future__ import annotations

import os
import stat

from ...confinement import LIST, READ, WRITE, decide
from .tenant_execution import Execution, current_execution, refuse, runtime, trusted_node

_FD_PATH = "/proc/self/fd/{}"


def _open_access(mode, flags) -> str:
    if isinstance(mode, str):
        return WRITE if any(c in mode for c in "wax+") else READ
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    return WRITE if isinstance(flags, int) and flags & writing else READ


# event -> ((argument index, access, index of its dir_fd or None), ...)
WATCHED = {
    "os.listdir": ((0, LIST, None),),
    "os.scandir": ((0, LIST, None),),
    "os.remove": ((0, WRITE, 1),),
    "os.rmdir": ((0, WRITE, 1),),
    "os.mkdir": ((0, WRITE, 2),),
    "os.rename": ((0, WRITE, 2), (1, WRITE, 3)),
    "os.link": ((0, READ, 2), (1, WRITE, 3)),
    "os.truncate": ((0, WRITE, None),),
    "os.chmod": ((0, WRITE, 2),),
    "shutil.copyfile": ((0, READ, None), (1, WRITE, None)),
    "shutil.copytree": ((0, READ, None), (1, WRITE, None)),
    "shutil.move": ((0, WRITE, None), (1, WRITE, None)),
    "shutil.rmtree": ((0, WRITE, 1),),
}


def _located(execution: Execution, path, dir_fd) -> str:
    """The absolute path an event names, as real as the rule needs it: symlinks are followed wherever they could
    lead a name from outside the tenant's folders into them or out of them, but a name inside the tenant's folder
    costs one lstat per component below it (not realpath's one per component from /)."""
    if path is None:
        path = "."
    if isinstance(path, int):
        return os.path.realpath(os.readlink(_FD_PATH.format(path)))
    path = os.fsdecode(os.fspath(path))
    if not os.path.isabs(path):
        fd_dir = isinstance(dir_fd, int) and dir_fd >= 0
        path = os.path.join(os.readlink(_FD_PATH.format(dir_fd)) if fd_dir else os.getcwd(), path)
    if path.startswith("/proc/") and path[6:] not in ("", ".", "..") and "/" not in path[6:]:
        return path  # /proc/meminfo, /proc/stat...: system facts ComfyUI reads between nodes; none leads out of /proc
    if "/../" in path or path.endswith("/.."):
        return os.path.realpath(path)  # `link/..` is the link target's parent, not what the text says
    text = _dealiased(os.path.normpath(path))
    for folder in execution.layout.tenant_folders(execution.tenant):
        if text == folder or text.startswith(folder + os.sep):
            return _below(folder, text)
    if (text + os.sep).startswith(execution.layout.closed):
        return text  # another tenant's, or shared: refused (or a folder root listed) as named
    return os.path.realpath(text)


def _below(folder: str, text: str) -> str:
    """`text` unless a component below `folder` is a symlink (then where it really leads)."""
    current = folder
    for part in text[len(folder) + 1:].split(os.sep) if text != folder else ():
        current = f"{current}{os.sep}{part}"
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return os.path.realpath(text)
        except OSError:
            return text  # missing from here on: nothing below can be a link
    return text


def _dealiased(text: str) -> str:
    """A path under a folder root as ComfyUI names it (perhaps through a symlink) -> under its real path."""
    for given, real in runtime.get("aliases", ()):
        if text == given or text.startswith(given + os.sep):
            return real + text[len(given):]
    return text


def _targets(event: str, args: tuple) -> list[tuple[object, str, object]]:
    if event == "open":
        path = args[0]
        return [] if isinstance(path, int) else [(path, _open_access(args[1], args[2]), None)]
    if event == "os.symlink" and isinstance(args[0], (str, bytes, os.PathLike)):
        # a link pointing at another tenant's file is refused when made, not only when followed
        link, target = os.fsdecode(os.fspath(args[1])), os.fsdecode(os.fspath(args[0]))
        return [(os.path.join(os.path.dirname(link), target), READ, None), (args[1], WRITE, args[2])]
    return [(args[i], access, args[fd] if fd is not None and fd < len(args) else None)
            for i, access, fd in WATCHED[event] if i < len(args)]


def audit(event: str, args: tuple) -> None:
    if event != "open" and event not in WATCHED:
        return
    execution = current_execution.get()
    if execution is None:
        return
    context = runtime.get("node_context")
    if context is not None and context.get() is None:
        return  # ComfyUI's own work between nodes (INPUT_TYPES, caching): only node code is watched
    _check(execution, event, args)


def _check(execution: Execution, event: str, args: tuple) -> None:
    for path, access, dir_fd in _targets(event, args):
        try:
            real = _located(execution, path, dir_fd)
        except (OSError, TypeError, ValueError):
            continue  # the call itself fails the same way
        reason = decide(execution.layout, execution.tenant, real, access)
        if reason is not None and not trusted_node():
            raise refuse(execution, reason)


