"""Every node class the running ComfyUI registers (core, comfy_extras, ours), every STRING or COMBO input, values
naming another tenant's file or folder in every spelling, run as a tenant: none of the other tenant's bytes reaches
the caller's outputs, `/view`, history or websocket, and no node writes anywhere but the caller's own folders.

Graphs are minimal: the node under test, its other inputs at their defaults, tiny images and latents for image and
latent inputs, a sink for its first output. Classes that need a model (or any other input only a loaded model
gives) and API nodes (they call remote services) are skipped: their file inputs never reach the disk without one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
import websocket
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from tests.harness.client import ComfyClient

pytestmark = [pytest.mark.comfy, pytest.mark.slow]
CALLER, OTHER = "tenant-light", "tenant-b"
TOKEN = f"sentinel-{uuid.uuid4().hex}"
B_IMAGE_SIZE = (29, 31)  # no graph here makes an image of this size: seeing one in the caller's files is a leak
B_LATENT_SHAPE = (1, 4, 3, 5)
FILES = ("f.png", "f.txt", "f.latent")
SPELLINGS = ("tenants/{other}/{file}", "tenants/{other}/{file} [input]", "tenants/{other}/{file} [output]",
             "tenants/{other}/{file} [temp]", "../input/tenants/{other}/{file}", "../../input/tenants/{other}/{file}",
             "{absolute}", "tenants/{other}", "tenants", "upload://{other}/{file}")
# Inputs the graphs can feed without a model: type -> (node, inputs, output index)
PROVIDERS = {"IMAGE": ("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0}),
             "LATENT": ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
             "MASK": ("SolidMask", {"value": 1.0, "width": 8, "height": 8})}
SINKS = {"IMAGE": ("SaveImage", "images", {"filename_prefix": "every/out"}),
         "LATENT": ("SaveLatent", "samples", {"filename_prefix": "every/out"})}
PER_PROMPT_S = 60
BATCH = 40  # prompts queued before their results are read (the plan allows 50 at once)


def plant_other_tenants_files(base: Path) -> None:
    """A file of each kind in each of B's folders, and one of its uploads: distinctive, so any copy is seen."""
    for folder in ("input", "output", "temp"):
        root = base / folder / "tenants" / OTHER
        root.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", B_IMAGE_SIZE, (17, 203, 99)).save(root / "f.png")
        (root / "f.txt").write_text(TOKEN)
        save_file({"latent_tensor": torch.full(B_LATENT_SHAPE, 0.123)}, str(root / "f.latent"))


def snapshot(base: Path) -> dict[str, str]:
    """Every file under input/, output/ and temp/, with a hash of its bytes."""
    found = {}
    for folder in ("input", "output", "temp"):
        for directory, _subdirs, names in os.walk(base / folder):
            for name in names:
                path = Path(directory) / name
                found[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def spec_type(spec) -> tuple[str, list | None]:
    """(type, combo options) of an /object_info input spec, in either shape ComfyUI answers."""
    kind = spec[0] if isinstance(spec, list) and spec else spec
    if isinstance(kind, list):
        return "COMBO", kind
    options = spec[1].get("options") if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) \
        else None
    return str(kind), options


def widget_value(kind: str, spec, options):
    extra = spec[1] if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind == "COMBO":
        return extra.get("default", options[0]) if options else None
    if kind in ("INT", "FLOAT"):
        return extra.get("default", extra.get("min", 0))
    if kind == "BOOLEAN":
        return extra.get("default", False)
    if kind == "STRING":
        return extra.get("default", "")
    return None


def graphs(class_type: str, info: dict, have: set[str]):
    """(input name, graph with a placeholder for the attack value) for each STRING / COMBO input."""
    required = (info.get("input") or {}).get("required") or {}
    optional = (info.get("input") or {}).get("optional") or {}
    nodes, inputs, empty = {}, {}, set()
    for name, spec in required.items():
        kind, options = spec_type(spec)
        if kind in PROVIDERS:
            provider, values = PROVIDERS[kind]
            if provider not in have:
                return
            nodes[f"p{len(nodes)}"] = {"class_type": provider, "inputs": dict(values)}
            inputs[name] = [f"p{len(nodes) - 1}", 0]
            continue
        value = widget_value(kind, spec, options)
        if value is None and kind == "COMBO":
            empty.add(name)  # nothing to choose from here (no model, no file): only usable as the target
        elif value is None and kind != "STRING":
            return  # a model, a clip, a custom type: this class needs what a minimal graph cannot give
        inputs[name] = value
    targets = [n for n, s in {**required, **optional}.items() if spec_type(s)[0] in ("STRING", "COMBO")]
    outputs = info.get("output") or []
    sink = None
    if not info.get("output_node"):
        if not outputs:
            return
        kind = outputs[0] if isinstance(outputs[0], str) else "*"
        node, socket, values = SINKS.get(kind, ("PreviewAny", "source", {}))
        if node not in have:
            return
        sink = {"class_type": node, "inputs": {socket: ["n", 0], **values}}
    for target in [t for t in targets if empty <= {t}]:
        graph = {**json.loads(json.dumps(nodes)), "n": {"class_type": class_type, "inputs": dict(inputs)}}
        if sink:
            graph["s"] = json.loads(json.dumps(sink))
        yield target, graph


def attacks(base: Path):
    for file in FILES:
        for spelling in SPELLINGS:
            absolute = base / "input" / "tenants" / OTHER / file
            value = spelling.format(other=OTHER, file=file, absolute=absolute)
            if file != FILES[0] and "{file}" not in spelling and "{absolute}" not in spelling:
                continue  # folder spellings once
            yield value


def carries_b(data: bytes) -> str | None:
    """What of B's planted files these bytes carry (its text, an image of its size, a latent of its shape)."""
    if TOKEN.encode() in data:
        return "B's text"
    try:
        if Image.open(io.BytesIO(data)).size == B_IMAGE_SIZE:
            return "B's image"
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:
        if any(tuple(t.shape) == B_LATENT_SHAPE for t in load(data).values()):
            return "B's latent"
    except SafetensorError:
        pass  # not a safetensors file: nothing of B's latent in it
    return None


def leaked(base: Path, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files the run added or changed outside the caller's folders, and caller files carrying B's data."""
    own = tuple(f"{folder}/tenants/{CALLER}/" for folder in ("input", "output", "temp"))
    problems = []
    for path, digest in after.items():
        if before.get(path) == digest:
            continue
        if not path.startswith(own):
            problems.append(f"written outside the caller's folders: {path}")
            continue
        found = carries_b((base / path).read_bytes())
        if found:
            problems.append(f"{found} in {path}")
    return problems + [f"removed: {path}" for path in before if path not in after]


class Recorder:
    """The caller's websocket, every message kept: text and binary (previews)."""

    def __init__(self, client: ComfyClient, client_id: str) -> None:
        self.socket = client.websocket(client_id)
        self.text: list[str] = []
        self.binary: list[bytes] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        try:
            while message := self.socket.recv():
                (self.text if isinstance(message, str) else self.binary).append(message)
        except (websocket.WebSocketException, OSError):
            return  # closed

    def problems(self) -> list[str]:
        self.socket.close()
        self.thread.join(10)
        found = [f"B's text in a websocket message: {m[:200]}" for m in self.text if TOKEN in m]
        found += [f"{what} in a websocket preview" for m in self.binary if (what := carries_b(m[8:]))]
        return found + ([] if self.text else ["the websocket heard nothing: the check saw nothing"])


def viewed(caller: ComfyClient, outputs: dict) -> list[str]:
    """Each file the caller's history lists, fetched through /view: none may carry B's data."""
    problems = []
    for refs in (items for output in outputs.values() for items in output.values() if isinstance(items, list)):
        for ref in (r for r in refs if isinstance(r, dict) and "filename" in r):
            params = {k: ref.get(k, "") for k in ("filename", "subfolder", "type")}
            response = caller.get("/view", params=params)
            found = carries_b(response.content) if response.status_code == 200 else None
            if found:
                problems.append(f"{found} through /view {params}")
    return problems


def test_no_node_gives_a_tenant_another_tenants_files(comfyui):
    caller = ComfyClient(comfyui.url, comfyui.seeded.keys["light"])
    plant_other_tenants_files(comfyui.base)
    object_info = caller.get("/object_info").json()
    have = set(object_info)
    before = snapshot(comfyui.base)
    started, ran, refused, problems = time.monotonic(), 0, 0, []
    classes = [c for c, info in object_info.items() if not info.get("api_node")
               and not str(info.get("python_module", "")).startswith("comfy_api_nodes")]
    queued: dict[str, str] = {}  # prompt id -> what it tried
    client_id = "every-node"
    recorder = Recorder(caller, client_id)

    def drain() -> None:
        for prompt_id, tried in queued.items():
            entry = caller.wait_history(prompt_id, PER_PROMPT_S)
            seen = json.dumps(entry)
            if TOKEN in seen:  # (not B's id: the caller may name its own folders `tenants/tenant-b/...`)
                problems.append(f"{tried}: B's data in the history: {seen[:300]}")
            problems.extend(f"{tried}: {p}" for p in viewed(caller, entry.get("outputs") or {}))
        queued.clear()

    for class_type in classes:
        for target, graph in graphs(class_type, object_info[class_type], have):
            for value in attacks(comfyui.base):
                graph["n"]["inputs"][target] = value
                response = caller.queue(graph, client_id=client_id)
                if response.status_code != 200:
                    assert response.status_code in (400, 403), (class_type, target, value, response.text)
                    refused += 1
                    continue
                ran += 1
                queued[response.json()["prompt_id"]] = f"{class_type}.{target}={value!r}"
                if len(queued) >= BATCH:
                    drain()
    drain()
    problems += leaked(comfyui.base, before, snapshot(comfyui.base)) + recorder.problems()
    elapsed = time.monotonic() - started
    print(f"\n{len(classes)} classes, {ran} prompts ran, {refused} refused at /prompt, {elapsed:.0f} s")
    assert ran + refused > 500, "the property covered too little: did /object_info change shape?"
    assert not problems, "\n".join(problems[:40])
