"""Tenants' outputs in S3-compatible object storage: where a file goes in the bucket, and whether a download is
answered from the bucket (a redirect to a short-lived presigned URL) or from this machine's disk.

Pure decisions over data; the bucket itself is reached through `tenancy.store.object_store`."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from urllib.parse import quote

from .paths import TENANTS_DIR, virtual_subfolder

UPLOADED_FOLDERS = ("output",)  # previews in temp/ are not kept
SHARED_FOLDERS = ("input",)  # tenants' uploads, in the bucket when the cluster queue is on (`shared_inputs`)
PREVIEWS = "temp"  # in a cluster, a tenant's previews are put in the bucket as they are shown (any instance serves)
PREVIEW_TAG = "tenancy-kind=preview"  # object tag of previews, for a bucket lifecycle rule that expires them
SHOWN_FOLDERS = (*UPLOADED_FOLDERS, PREVIEWS)
SHOWN_MAX_BYTES = 32 * 1024 * 1024
REDIRECT, DISK, LOOK = "redirect", "disk", "look"
OCTET_STREAM = "application/octet-stream"


def object_key(prefix: str, tenant: str, folder: str, subfolder: str, filename: str) -> str:
    """`<prefix>tenants/<tenant>/<folder>/<subfolder>/<file>`, with the subfolder as the tenant names it: the key
    is derived on the server from where the file lies, never from what a client sends."""
    own = virtual_subfolder(tenant, subfolder)
    parts = (TENANTS_DIR, tenant, folder, subfolder if own is None else own, filename)
    return normalised_prefix(prefix) + "/".join(part for part in parts if part)


def normalised_prefix(prefix: str) -> str:
    cleaned = prefix.strip("/")
    return f"{cleaned}/" if cleaned else ""


def owner_of(subfolder: str) -> str | None:
    """The tenant whose folder a real subfolder lies in (`tenants/<tenant>/…`), None outside tenants' folders."""
    parts = subfolder.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == TENANTS_DIR and parts[1] else None


def uploaded_files(tenant: str | None, files: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """What of a finished prompt's files goes to the bucket: a tenant's outputs, each once (operators' prompts and
    previews stay local)."""
    if not tenant:
        return []
    return list(dict.fromkeys(f for f in files if f[0] in UPLOADED_FOLDERS))


def bucket_folders(cluster: bool) -> tuple[str, ...]:
    """The folders whose files /view may find in the bucket: outputs; in a cluster, tenants' uploads and previews
    too (any instance answers for them, and their prompts may run on any)."""
    return UPLOADED_FOLDERS + SHARED_FOLDERS + (PREVIEWS,) if cluster else UPLOADED_FOLDERS


def shown_files(output: object) -> list[tuple[str, str, str]]:
    """(folder, real subfolder, file name) of the outputs and previews an `executed` message's output names
    (ComfyUI's refs, before they are read back in the tenant's names), each once."""
    found: list[tuple[str, str, str]] = []
    for refs in output.values() if isinstance(output, dict) else ():
        for ref in refs if isinstance(refs, list) else ():
            if isinstance(ref, dict) and ref.get("type") in SHOWN_FOLDERS and isinstance(ref.get("filename"), str):
                found.append((ref["type"], str(ref.get("subfolder") or ""), ref["filename"]))
    return list(dict.fromkeys(found))


def result_files(history_result: object) -> list[tuple[str, str, str]]:
    """The files of `shown_files` every node of a finished prompt's result names (ComfyUI's history entry)."""
    outputs = history_result.get("outputs") if isinstance(history_result, dict) else None
    nodes = outputs.values() if isinstance(outputs, dict) else ()
    return list(dict.fromkeys(ref for output in nodes for ref in shown_files(output)))


def put_when_shown(folder: str, size: int) -> bool:
    """In a cluster, whether a file an `executed` message names is put in the bucket before the message goes on
    (its reader may ask any instance for it at once): every preview, and outputs up to SHOWN_MAX_BYTES; a larger
    output (a long video) waits for the upload after the prompt, and until then only its instance serves it."""
    return folder == PREVIEWS or (folder in UPLOADED_FOLDERS and size <= SHOWN_MAX_BYTES)


def where_to_serve(*, uploaded: bool, reachable: bool, on_disk: bool) -> str:
    """REDIRECT to the bucket when the file is known to be there and the bucket answers; DISK while the upload is
    pending or the bucket is down (what the server did before); LOOK (ask the bucket) when the file is on neither
    list: another instance may have uploaded it."""
    if uploaded and reachable:
        return REDIRECT
    if on_disk or not reachable:
        return DISK
    return LOOK


def view_redirectable(query: Mapping[str, str]) -> bool:
    """A /view that ComfyUI answers with the file's bytes as they are: not a converted preview, not one channel."""
    return "preview" not in query and query.get("channel", "rgba") == "rgba"


def content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or OCTET_STREAM


def content_disposition(filename: str, attachment: bool) -> str:
    """The header the presigned URL makes the bucket answer with: the file's own name (RFC 6266, with the UTF-8
    form for names that are not plain ASCII), inline for /view, attachment for signed downloads."""
    kind = "attachment" if attachment else "inline"
    plain = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    if plain == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
