"""What the guard knows about node classes, derived from their definitions (not from their names).

Built from ComfyUI's `/object_info` shape plus optional metadata a node class declares (`TENANCY_META`) and
the operator's `file_inputs` table; consulted by the workflow policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .paths import TENANTS_DIR

log = logging.getLogger("tenancy")

UPLOAD_FLAGS = {"image_upload": "image", "audio_upload": "audio", "video_upload": "video"}
PREFIX_INPUTS = frozenset({"filename_prefix"})
# Names that mean the same thing in most packs; a node's TENANCY_META may add its own.
DURATION_INPUTS = frozenset({"duration", "duration_s", "seconds"})
RESOLUTION_INPUTS = frozenset({"width", "height", "min_resolution", "resolution"})
FRAME_INPUTS = frozenset({"frames", "num_frames", "frame_count", "video_frames", "length"})


class NodeMeta(TypedDict, total=False):
    """What a node class may declare about itself as `TENANCY_META` (every key optional); the guard reads
    nothing else from it, and a key it does not know is logged once at start-up and ignored."""

    file_inputs: list[str]          # inputs naming a file in the tenant's input folder
    output_inputs: list[str]        # inputs naming a place in the tenant's output folder (like filename_prefix)
    duration_inputs: list[str]      # inputs a plan's max duration lowers, besides the usual names
    resolution_inputs: list[str]    # ... a plan's max resolution
    frame_inputs: list[str]         # ... a plan's max frames
    tenant_lists: dict[str, str]    # input -> a per-tenant list the guard fills (e.g. voice -> voices)
    estimate: dict[str, Any]        # the seconds-of-media rule (see admission.estimate_seconds)
    model_inputs: list[str]         # inputs naming a model file (cluster model affinity), besides model combos


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    options: tuple | None = None
    upload: str | None = None  # image | audio | video when the input names an uploaded file


@dataclass(frozen=True)
class NodeSpec:
    class_type: str
    inputs: Mapping[str, InputSpec]
    file_inputs: frozenset[str] = frozenset()
    folder_inputs: Mapping[str, str] = field(default_factory=dict)  # input -> the folder (input/output) it lists
    output_inputs: frozenset[str] = PREFIX_INPUTS  # name a place in the output folder (made if missing)
    duration_inputs: frozenset[str] = DURATION_INPUTS
    resolution_inputs: frozenset[str] = RESOLUTION_INPUTS
    frame_inputs: frozenset[str] = FRAME_INPUTS
    meta: Mapping[str, Any] = field(default_factory=dict)
    model_inputs: Mapping[str, str] = field(default_factory=dict)  # input -> the model folder it names a file of


@dataclass(frozen=True)
class Catalogue:
    nodes: Mapping[str, NodeSpec]

    def get(self, class_type: str) -> NodeSpec | None:
        return self.nodes.get(class_type)

    @classmethod
    def build(cls, object_info: Mapping[str, Mapping], meta: Mapping[str, NodeMeta] | None = None,
              file_inputs: Mapping[str, Iterable[str]] | None = None,
              input_files: Iterable[str] = (), subfolders: Mapping[str, Iterable[str]] | None = None,
              output_inputs: Mapping[str, Iterable[str]] | None = None,
              model_files: Mapping[str, Iterable[str]] | None = None) -> Catalogue:
        """`object_info`: class -> ComfyUI's node info; `meta`: class -> TENANCY_META; `file_inputs`,
        `output_inputs`: the config tables; `input_files`: names in the input folder (combos listing them are
        file inputs);
        `subfolders`: folder (input, output) -> the subfolders in it (combos listing them are folder inputs);
        `model_files`: model folder (checkpoints, loras, ...) -> the files it lists (combos listing only such
        files are model inputs)."""
        meta, file_inputs, known_files = meta or {}, file_inputs or {}, set(input_files)
        output_inputs = output_inputs or {}
        models = {folder: set(names) for folder, names in sorted((model_files or {}).items()) if names}
        subfolders = {folder: set(names) for folder, names in (subfolders or {}).items()}
        nodes = {}
        for class_type, info in object_info.items():
            inputs = dict(_inputs(info))
            node_meta = _known(class_type, meta.get(class_type) or {})
            files = {n for n, spec in inputs.items() if spec.upload}
            files |= {n for n, spec in inputs.items()
                      if spec.options and known_files and set(map(str, spec.options)) <= known_files}
            files |= set(file_inputs.get(class_type, ())) | set(node_meta.get("file_inputs", ()))
            folders = {}
            for name, spec in inputs.items():
                listed = _lists_tenant_folders(spec)
                if listed == "folders":
                    folders[name] = _folder_listed(spec, subfolders)
                elif listed == "files":
                    files.add(name)
            files -= set(node_meta.get("tenant_lists", {}))  # per-tenant items (voices), not input files
            files -= set(folders)
            nodes[class_type] = NodeSpec(
                class_type=class_type, inputs=inputs, file_inputs=frozenset(files), folder_inputs=folders,
                output_inputs=PREFIX_INPUTS | frozenset(output_inputs.get(class_type, ()))
                | frozenset(node_meta.get("output_inputs", ())),
                duration_inputs=DURATION_INPUTS | frozenset(node_meta.get("duration_inputs", ())),
                resolution_inputs=RESOLUTION_INPUTS | frozenset(node_meta.get("resolution_inputs", ())),
                frame_inputs=FRAME_INPUTS | frozenset(node_meta.get("frame_inputs", ())),
                meta=node_meta, model_inputs=_model_inputs(inputs, models, node_meta.get("model_inputs", ())))
        return cls(nodes)

    @staticmethod
    def options_of(entry: Any) -> tuple | None:
        """The names a combo input offers, whichever shape ComfyUI answered; None for other inputs."""
        return _input_spec("", entry).options if isinstance(entry, (list, tuple)) and entry else None


def _inputs(info: Mapping) -> Iterable[tuple[str, InputSpec]]:
    for section in ("required", "optional"):
        for name, spec in (info.get("input", {}).get(section) or {}).items():
            yield name, _input_spec(name, spec)


def _input_spec(name: str, spec: Any) -> InputSpec:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    options = tuple(kind) if isinstance(kind, (list, tuple)) else opts.get("options")
    upload = next((v for k, v in UPLOAD_FLAGS.items() if opts.get(k)), None)
    if upload is None and opts.get("upload") in UPLOAD_FLAGS.values():
        upload = opts["upload"]
    return InputSpec(name=name, type="COMBO" if options is not None else str(kind), default=opts.get("default"),
                     minimum=opts.get("min"), maximum=opts.get("max"),
                     options=tuple(options) if options is not None else None, upload=upload)


def _lists_tenant_folders(spec: InputSpec) -> str | None:
    """What a combo lists that lies in the tenants' folders, told by its options (not by the node's name):
    "folders" when it lists the `tenants` folder itself (a listing of subfolders, e.g. dataset nodes' `folder`),
    "files" when it lists names inside it (a recursive file listing), None when neither."""
    if spec.upload or not spec.options:
        return None
    names = [o for o in spec.options if isinstance(o, str)]
    if TENANTS_DIR in names:
        return "folders"
    if any(n.startswith(TENANTS_DIR + "/") for n in names):
        return "files"
    return None


def _folder_listed(spec: InputSpec, subfolders: Mapping[str, set[str]]) -> str:
    """input or output: the folder whose subfolders the combo lists (input when both or neither fit)."""
    names = {o for o in spec.options or () if isinstance(o, str)}
    for folder in ("input", "output"):
        if folder in subfolders and names <= subfolders[folder]:
            return folder
    return "input"


def _model_inputs(inputs: Mapping[str, InputSpec], models: Mapping[str, set[str]],
                  declared: Iterable[str]) -> dict[str, str]:
    """input -> model folder: combos whose options are all files of one model folder (the first by name when
    several list them all), and the inputs the node declares (folder `models`)."""
    found = dict.fromkeys(declared, "models")
    for name, spec in inputs.items():
        options = {o for o in spec.options or () if isinstance(o, str)}
        if name in found or spec.upload or not options or not all(isinstance(o, str) for o in spec.options):
            continue
        folder = next((folder for folder, names in models.items() if options <= names), None)
        if folder is not None:
            found[name] = folder
    return found


_WARNED: set[tuple[str, str]] = set()


def _known(class_type: str, meta: Mapping) -> dict:
    """The TENANCY_META keys the guard knows; a misspelt or newer one is told once, not silently dropped."""
    for key in set(meta) - set(NodeMeta.__annotations__):
        if (class_type, key) not in _WARNED:
            _WARNED.add((class_type, key))
            log.warning("[tenancy] %s declares TENANCY_META[%r], which the guard does not know: ignored",
                        class_type, key)
    return dict(meta)
