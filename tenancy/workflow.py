"""The workflow policy: one walk over a posted `/prompt` body that confines it to its tenant and plan.

Pure: takes the body, the principal, the plan, the node catalogue and the settings; returns the rewritten
body with the list of visible rewrites, or raises a Refusal whose `node_errors` name the node and input.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalogue import DURATION_INPUTS, FRAME_INPUTS, PREFIX_INPUTS, RESOLUTION_INPUTS, Catalogue, NodeSpec
from .config import Plan
from .paths import FileRef, PathRefused, map_file_input, map_folder_input, map_output_prefix
from .records import Principal
from .refusal import Refusal, node_refusal

ADMIN_NAMESPACE = "_admin"
CLIENT_FIELDS = ("number", "front", "prompt_id", "client_id")
# What a tenant's client may put in `extra_data` (the editor's workflow for PNG metadata, its own comfy.org
# credentials for API nodes, its preview format); the rest (client_id, create_time, usage source, the guard's
# own `tenancy`, keys a newer ComfyUI may read or echo) is the server's to set.
TENANT_EXTRA_DATA = frozenset({"extra_pnginfo", "auth_token_comfy_org", "api_key_comfy_org", "preview_method"})
# A client's own prompt id is kept when it is a UUID written the usual way (ComfyUI's script examples send
# str(uuid.uuid4()) and wait for messages carrying it); whether it is new is the store's to say at admission.
CLIENT_PROMPT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Rewrite:
    node: str
    input: str
    before: Any
    after: Any
    reason: str  # forbidden_input | clamped | plan_limit | model_routing

    def as_dict(self) -> dict:
        return {"node": self.node, "input": self.input, "before": self.before, "after": self.after,
                "reason": self.reason}


@dataclass
class Outcome:
    body: dict
    prompt_id: str
    client_id: str
    rewrites: list[Rewrite] = field(default_factory=list)
    files: list[tuple[str, str, FileRef]] = field(default_factory=list)  # (node, input, ref) to check on disk


def client_namespace(principal: Principal) -> str:
    return principal.tenant if principal.tenant else ADMIN_NAMESPACE


def namespaced_client_id(principal: Principal, client_id: Any) -> str:
    """Idempotent: the editor echoes back the sid it was given, which already carries the namespace."""
    prefix = client_namespace(principal) + ":"
    if isinstance(client_id, str) and client_id.startswith(prefix) and len(client_id) > len(prefix):
        return client_id
    tail = client_id if isinstance(client_id, str) and client_id and ":" not in client_id else uuid.uuid4().hex
    return prefix + tail[:128]


def client_prompt_id(value: Any) -> str | None:
    """The prompt id a client chose, None when it chose none; anything but a UUID is refused."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not CLIENT_PROMPT_ID.fullmatch(value):
        raise Refusal(400, "invalid_prompt_id", "a prompt_id you choose must be a UUID (e.g. str(uuid.uuid4())); "
                      "send none and the server picks one")
    return value


def apply_policy(body: Any, principal: Principal, plan: Plan | None, catalogue: Catalogue,
                 model_routing: Mapping[str, Mapping] | None = None, prompt_id: str | None = None) -> Outcome:
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
        raise Refusal(400, "no_prompt", "the body needs a `prompt` object (an API-format workflow)")
    body = _copied(body)
    client_id = namespaced_client_id(principal, body.get("client_id"))
    outcome = Outcome(body=body, prompt_id=prompt_id or client_prompt_id(body.get("prompt_id")) or str(uuid.uuid4()),
                      client_id=client_id)
    for node_id, node in body["prompt"].items():
        _walk_node(str(node_id), node, principal, plan, catalogue, model_routing or {}, outcome)
    _server_fields(body, principal, outcome)
    return outcome


def _walk_node(node_id: str, node: Any, principal: Principal, plan: Plan | None, catalogue: Catalogue,
               model_routing: Mapping[str, Mapping], outcome: Outcome) -> None:
    if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
            or not isinstance(node.get("inputs", {}), dict):
        class_type = str(node.get("class_type", "")) if isinstance(node, dict) else ""
        raise node_refusal(400, "invalid_prompt", node_id, class_type, None,
                           "each node needs a `class_type` string and an `inputs` object")
    class_type = node["class_type"]
    if plan is not None:
        _check_node_allowed(node_id, class_type, plan)
    spec = catalogue.get(class_type)
    inputs = node.setdefault("inputs", {})
    for name in list(inputs):
        value = inputs[name]
        if _is_link(value):
            continue
        if principal.tenant is not None:
            inputs[name] = _confine(node_id, class_type, name, value, spec, principal.tenant, outcome)
        if plan is not None:
            inputs[name] = _limit(node_id, class_type, name, inputs[name], spec, plan, outcome)
        inputs[name] = _route_model(node_id, name, inputs[name], principal, model_routing, outcome)


def _check_node_allowed(node_id: str, class_type: str, plan: Plan) -> None:
    if class_type in plan.deny_nodes or (plan.allow_nodes and class_type not in plan.allow_nodes):
        raise node_refusal(403, "forbidden_node", node_id, class_type, None,
                           f"your plan does not allow the node {class_type}")


def _confine(node_id: str, class_type: str, name: str, value: Any, spec: NodeSpec | None, tenant: str,
             outcome: Outcome) -> Any:
    try:
        if name in (spec.output_inputs if spec is not None else PREFIX_INPUTS):
            return map_output_prefix(tenant, value)
        if spec is not None and name in spec.file_inputs:
            ref = map_file_input(tenant, value)
            outcome.files.append((node_id, name, ref))
            return ref.comfy_value
        if spec is not None and name in spec.folder_inputs:
            ref = map_folder_input(tenant, value, spec.folder_inputs[name])
            outcome.files.append((node_id, name, ref))
            return ref.comfy_value
    except PathRefused as exc:
        raise node_refusal(403, PathRefused.reason, node_id, class_type, name,
                           f"{value!r} is outside your files ({exc})") from None
    return value


def _limit(node_id: str, class_type: str, name: str, value: Any, spec: NodeSpec | None, plan: Plan,
           outcome: Outcome) -> Any:
    if name in plan.forbidden_inputs:
        default = spec.inputs[name].default if spec is not None and name in spec.inputs else None
        if default is None:
            raise node_refusal(403, "forbidden_input", node_id, class_type, name,
                               f"your plan does not allow setting {name}")
        if value != default:
            outcome.rewrites.append(Rewrite(node_id, name, value, default, "forbidden_input"))
        return default
    bound = plan.clamp.get(name)
    if bound is not None and _is_number(value):
        low, high = bound
        limited = min(max(value, low), high)
        if limited != value:
            outcome.rewrites.append(Rewrite(node_id, name, value, limited, "clamped"))
        return limited
    maximum = _plan_maximum(name, spec, plan)
    if maximum is not None and _is_number(value) and value > maximum:
        outcome.rewrites.append(Rewrite(node_id, name, value, maximum, "plan_limit"))
        return type(value)(maximum) if isinstance(value, int) else float(maximum)
    return value


def _plan_maximum(name: str, spec: NodeSpec | None, plan: Plan) -> float | None:
    durations = spec.duration_inputs if spec else DURATION_INPUTS
    resolutions = spec.resolution_inputs if spec else RESOLUTION_INPUTS
    frames = spec.frame_inputs if spec else FRAME_INPUTS
    for names, limit in ((durations, plan.max_duration_s), (resolutions, plan.max_resolution),
                         (frames, plan.max_frames)):
        if name in names and limit >= 0:
            return limit
    return None


def _route_model(node_id: str, name: str, value: Any, principal: Principal, model_routing: Mapping[str, Mapping],
                 outcome: Outcome) -> Any:
    for tag in principal.tags:
        replacement = (model_routing.get(tag) or {}).get(name, {}).get(value) if isinstance(value, str) else None
        if replacement is not None:
            outcome.rewrites.append(Rewrite(node_id, name, value, replacement, "model_routing"))
            return replacement
    return value


def _server_fields(body: dict, principal: Principal, outcome: Outcome) -> None:
    front = bool(body.get("front")) and principal.is_admin
    for key in CLIENT_FIELDS:
        body.pop(key, None)
    if front:
        body["front"] = True
    body["prompt_id"] = outcome.prompt_id
    body["client_id"] = outcome.client_id
    extra = body.get("extra_data")
    extra = dict(extra) if isinstance(extra, dict) else {}
    if not principal.is_admin:
        extra = {key: value for key, value in extra.items() if key in TENANT_EXTRA_DATA}
        if not isinstance(extra.get("preview_method"), (str, type(None))):
            del extra["preview_method"]
    extra["tenancy"] = {"tenant": principal.tenant, "plan": principal.plan}
    body["extra_data"] = extra


def _copied(body: dict) -> dict:
    """The body with fresh copies of every dict the walk changes (body, prompt, nodes, inputs): the caller's stays
    as it was. Values are replaced, never changed in place, so they are shared (a deep copy cost more than the
    rest of the walk)."""
    body = dict(body)
    prompt = body["prompt"] = dict(body["prompt"])
    for node_id, node in prompt.items():
        if isinstance(node, dict):
            node = prompt[node_id] = dict(node)
            if isinstance(node.get("inputs"), dict):
                node["inputs"] = dict(node["inputs"])
    return body


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
