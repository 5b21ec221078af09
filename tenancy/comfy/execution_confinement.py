"""Tenant isolation where nodes execute: while a tenant's prompt is validated or runs, ComfyUI's name resolvers
answer inside the tenant's folders, cached node outputs are the tenant's own, and an audit hook refuses any file a
node opens, lists, removes or renames outside them (`tenancy.confinement` decides)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
import stat
import sys
from dataclasses import dataclass, field

from ..confinement import LIST, READ, REASON, WRITE, Layout, decide, tenant_prefix, tenant_relative
from ..paths import FOLDERS, PathRefused, contained, split_annotation, tenant_root
from .queue_surfaces import owner_in

log = logging.getLogger("tenancy")
SWITCH_ENV = "TENANCY_EXEC_CONFINEMENT"  # `off`: no audit hook (resolvers and cache keys stay confined)
CACHE_TAG = "tenancy.tenant"
_FD_PATH = "/proc/self/fd/{}"


class ConfinementRefused(PermissionError):
    """A node reached for a path outside its tenant's folders. A PermissionError, so code that walks folders and
    skips unreadable ones (os.walk, glob) skips these too."""

    reason = REASON


@dataclass
class Execution:
    """The tenant whose prompt this context validates or executes."""

    guard: object
    tenant: str
    prompt_id: str | None
    classes: dict[str, str]  # node id -> class_type
    layout: Layout
    refused: list[str] = field(default_factory=list)


_current: contextvars.ContextVar[Execution | None] = contextvars.ContextVar("tenancy_execution", default=None)
_runtime: dict = {}  # what install() found: the guard, ComfyUI's node context, trusted classes, the layout


def current() -> Execution | None:
    return _current.get()


# -- entering and leaving a tenant's prompt -----------------------------------------------------------------

@contextlib.contextmanager
def confined(guard, tenant: str | None, prompt: dict, prompt_id: str | None = None):
    """Everything in this context (this thread, and tasks it starts) runs as `tenant`; None: unconfined."""
    if not tenant or "guard" not in _runtime:
        yield None
        return
    classes = {str(k): v.get("class_type", "?") for k, v in prompt.items() if isinstance(v, dict)} \
        if isinstance(prompt, dict) else {}
    execution = Execution(guard, tenant, prompt_id, classes, layout())
    _ensure_folders(execution)
    token = _current.set(execution)
    try:
        yield execution
    finally:
        _current.reset(token)


def _wrap_executor(executor_cls) -> None:
    """PromptExecutor.execute_async (or execute, where there is no async one) runs inside `confined`."""
    name = "execute_async" if hasattr(executor_cls, "execute_async") else "execute"
    original = getattr(executor_cls, name)
    signature = inspect.signature(original)

    def tenant_of(args, kwargs) -> tuple[str | None, dict, str | None]:
        bound = signature.bind_partial(*args, **kwargs).arguments
        prompt_id, prompt = bound.get("prompt_id"), bound.get("prompt") or {}
        guard = _runtime["guard"]
        owner = guard.owners.get(prompt_id or "")
        if owner is None:
            owner = owner_in(bound.get("extra_data"))
        return owner or None, prompt, prompt_id

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def execute(*args, **kwargs):
            tenant, prompt, prompt_id = tenant_of(args, kwargs)
            with confined(_runtime["guard"], tenant, prompt, prompt_id):
                return await original(*args, **kwargs)
    else:
        @functools.wraps(original)
        def execute(*args, **kwargs):
            tenant, prompt, prompt_id = tenant_of(args, kwargs)
            with confined(_runtime["guard"], tenant, prompt, prompt_id):
                return original(*args, **kwargs)

    setattr(executor_cls, name, execute)


def _ensure_folders(execution: Execution) -> None:
    """The tenant's folders exist before its nodes run (creating `tenants/` itself is no tenant's business)."""
    made = _runtime.setdefault("made", set())
    if execution.tenant in made:
        return
    for folder in FOLDERS:
        os.makedirs(os.path.join(_root(folder), tenant_root(execution.tenant)), exist_ok=True)
    made.add(execution.tenant)


# -- the layout ---------------------------------------------------------------------------------------------

def layout() -> Layout:
    """Worked out once, at the first tenant prompt: by then every custom node has registered its model folders."""
    found = _runtime.get("layout")
    if found is None:
        import folder_paths

        real = os.path.realpath
        shared = {folder: real(_root(folder)) for folder in FOLDERS}
        private = {"user": real(folder_paths.get_user_directory()),
                   "tenancy": real(str(_runtime["guard"].settings.base_dir))}
        read_only = {}
        for name, (paths, *_rest) in folder_paths.folder_names_and_paths.items():
            for index, path in enumerate(paths):
                read_only[f"{name}#{index}" if index else name] = real(path)
        found = _runtime["layout"] = Layout(shared, private, read_only)
        given = {_root(folder): shared[folder] for folder in FOLDERS}
        given[folder_paths.get_user_directory()] = private["user"]
        _runtime["aliases"] = tuple((os.path.normpath(os.path.abspath(g)), r) for g, r in given.items()
                                    if os.path.normpath(os.path.abspath(g)) != r)
    return found


def _root(folder: str) -> str:
    import folder_paths

    return getattr(folder_paths, f"get_{folder}_directory")()


# -- refusals -----------------------------------------------------------------------------------------------

def _node() -> tuple[str, str]:
    context = _runtime.get("node_context")
    executing = context.get() if context is not None else None
    node_id = str(getattr(executing, "node_id", None) or "?")
    execution = _current.get()
    class_type = execution.classes.get(node_id) if execution else None
    return node_id, class_type or "?"  # an expanded node's class is not in the prompt


def _trusted_node() -> bool:
    """Nodes of this package keep tenants apart themselves (voices, profiles, secrets): not refused."""
    _node_id, class_type = _node()
    classes = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", {})
    return classes.get(class_type) in _runtime.get("trusted", ())


def refuse(execution: Execution, what: str) -> ConfinementRefused:
    node_id, class_type = _node()
    message = f"{REASON}: node {node_id} ({class_type}): {what}"
    execution.refused.append(message)
    execution.guard.audit.record(tenant=execution.tenant, prompt_id=execution.prompt_id, route="execution",
                                 decision="refuse", reason=REASON, node=node_id, class_type=class_type, detail=what)
    return ConfinementRefused(message)


# -- ComfyUI's name resolvers -------------------------------------------------------------------------------

def _folder_of(directory: str) -> str | None:
    """`input` / `output` / `temp` when `directory` is that folder's root (as ComfyUI names it), else None."""
    for folder in FOLDERS:
        if directory == _root(folder):
            return folder
    return None


def _resolve(execution: Execution, name: str, default_dir: str | None) -> str:
    text, annotated = split_annotation(name)
    base = _root(annotated) if annotated else default_dir if default_dir is not None else _root("input")
    try:
        if _folder_of(base) is not None:
            relative = tenant_relative(execution.tenant, text)
            contained(base, relative, execution.tenant)
            return os.path.join(base, relative)
    except PathRefused as exc:
        raise refuse(execution, f"{name!r} {exc}") from None
    path = os.path.join(base, text)
    reason = decide(execution.layout, execution.tenant, os.path.realpath(path), READ)
    if reason is not None:
        raise refuse(execution, f"{name!r}: {reason}")
    return path


def _wrap_resolvers(folder_paths) -> None:
    originals = {name: getattr(folder_paths, name) for name in
                 ("get_annotated_filepath", "exists_annotated_filepath", "get_save_image_path",
                  "get_input_subfolders") if hasattr(folder_paths, name)}

    def get_annotated_filepath(name, default_dir=None):
        execution = _current.get()
        if execution is None or not isinstance(name, str):
            return originals["get_annotated_filepath"](name, default_dir)
        return _resolve(execution, name, default_dir)

    def exists_annotated_filepath(name):
        execution = _current.get()
        if execution is None or not isinstance(name, str):
            return originals["exists_annotated_filepath"](name)
        try:
            return os.path.exists(_resolve(execution, name, None))
        except ConfinementRefused:
            return False

    def get_save_image_path(filename_prefix, output_dir, *args, **kwargs):
        execution = _current.get()
        if execution is not None:
            filename_prefix = _save_prefix(execution, filename_prefix, output_dir)
        return originals["get_save_image_path"](filename_prefix, output_dir, *args, **kwargs)

    def get_input_subfolders():
        execution = _current.get()
        if execution is None:
            return originals["get_input_subfolders"]()
        return _own_subfolders(execution)

    for name, wrapper in (("get_annotated_filepath", get_annotated_filepath),
                          ("exists_annotated_filepath", exists_annotated_filepath),
                          ("get_save_image_path", get_save_image_path),
                          ("get_input_subfolders", get_input_subfolders)):
        if name in originals:
            setattr(folder_paths, name, functools.wraps(originals[name])(wrapper))


def _save_prefix(execution: Execution, prefix, output_dir) -> str:
    """Into the tenant's folder when a node saves into a folder root (previews into temp/tenants/<t>/ too)."""
    try:
        if _folder_of(output_dir) is not None:
            return tenant_prefix(execution.tenant, prefix)
    except PathRefused as exc:
        raise refuse(execution, f"filename_prefix {prefix!r} {exc}") from None
    reason = decide(execution.layout, execution.tenant, os.path.realpath(output_dir), WRITE)
    if reason is not None:
        raise refuse(execution, reason)
    return prefix


def _own_subfolders(execution: Execution) -> list[str]:
    """The tenant's input folders by their real names (`tenants/<t>`, `tenants/<t>/sub`, ...)."""
    own = tenant_root(execution.tenant)
    top = os.path.join(_root("input"), own)
    found = [own] if os.path.isdir(top) else []
    for directory, subdirs, _files in os.walk(top):
        subdirs.sort()
        relative = os.path.relpath(directory, top)
        if relative != ".":
            found.append(f"{own}/{relative.replace(os.sep, '/')}")
    return sorted(found)


# -- cached node outputs ------------------------------------------------------------------------------------

def _tag_cache_keys(caching) -> int:
    """Every cache key a tenant's prompt makes carries the tenant: no output or node object is reused across
    tenants. Returns how many key classes were wrapped (0: this ComfyUI builds keys some other way)."""
    base = getattr(caching, "CacheKeySet", None)
    wrapped = 0
    for cls in list(vars(caching).values()):
        if isinstance(cls, type) and base is not None and issubclass(cls, base) and "add_keys" in vars(cls):
            cls.add_keys = _tagging(cls.add_keys)
            wrapped += 1
    return wrapped


def _tag(execution: Execution, keys: dict, before: set) -> None:
    for node_id in [k for k in keys if k not in before]:
        keys[node_id] = (CACHE_TAG, execution.tenant, keys[node_id])


def _tagging(add_keys):
    if inspect.iscoroutinefunction(add_keys):
        @functools.wraps(add_keys)
        async def tagged(self, node_ids, *args, **kwargs):
            execution = _current.get()
            if execution is None:
                return await add_keys(self, node_ids, *args, **kwargs)
            before = (set(self.keys), set(self.subcache_keys))
            result = await add_keys(self, node_ids, *args, **kwargs)
            _tag(execution, self.keys, before[0])
            _tag(execution, self.subcache_keys, before[1])
            return result
    else:
        @functools.wraps(add_keys)
        def tagged(self, node_ids, *args, **kwargs):
            execution = _current.get()
            if execution is None:
                return add_keys(self, node_ids, *args, **kwargs)
            before = (set(self.keys), set(self.subcache_keys))
            result = add_keys(self, node_ids, *args, **kwargs)
            _tag(execution, self.keys, before[0])
            _tag(execution, self.subcache_keys, before[1])
            return result
    return tagged


# -- the audit hook -----------------------------------------------------------------------------------------

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
    for given, real in _runtime.get("aliases", ()):
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


def _audit(event: str, args: tuple) -> None:
    if event != "open" and event not in WATCHED:
        return
    execution = _current.get()
    if execution is None:
        return
    context = _runtime.get("node_context")
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
        if reason is not None and not _trusted_node():
            raise refuse(execution, reason)


def install(guard, trusted_classes=()) -> None:
    """Wire the confinement into the running ComfyUI (feature-detected); the audit hook unless switched off."""
    import execution as comfy_execution
    import folder_paths

    _runtime.update(guard=guard, trusted=tuple(trusted_classes))
    utils = sys.modules.get("comfy_execution.utils")
    _runtime["node_context"] = getattr(utils, "current_executing_context", None)
    _wrap_resolvers(folder_paths)
    _wrap_executor(comfy_execution.PromptExecutor)
    caching = sys.modules.get("comfy_execution.caching")
    if caching is None or not _tag_cache_keys(caching):
        raise RuntimeError("cannot tell ComfyUI's cached node outputs apart per tenant (comfy_execution.caching)")
    if os.environ.get(SWITCH_ENV, "on").lower() == "off":
        log.warning("[tenancy] %s=off: nodes are confined by name only; a node that opens paths itself is not "
                    "stopped at other tenants' files", SWITCH_ENV)
        return
    sys.addaudithook(_audit)
