"""Test-only ComfyUI nodes (never shipped): parameters for the policy to act on, a slow node, a busy one, one
that makes audio of a known length, one that opens whatever path it is given, one that reports (as digests) the
API-node tokens it was handed, one that sends a preview, and one that works on a model whose load it simulates.

Two test hooks, each off unless its environment variable is set for the ComfyUI process:
- TENANCY_TEST_RUN_LOG=<file>: every run of the sleep node (and the tone node, which sleeps first) appends its
  tag to that file, one line per execution, so a test counts how often a prompt really ran across processes.
- TENANCY_TEST_HOLD_CLAIMED=1: this ComfyUI's worker stops for good right after its queue hands it a prompt
  whose sleep node is tagged `hold-after-claim:<this instance's port>`, before the prompt starts: the window
  between a cluster queue's claim and execution_start, held open so a test can kill the worker inside it. The
  hook wraps the `get` of whatever queue object the server holds, including one a plugin puts in place later
  (a data descriptor on PromptServer: ComfyUI's worker thread takes `server.prompt_queue` after every custom node
  has loaded)."""

import os
import threading
import time

HOLD_TAG = "hold-after-claim:"


def _held_tag(item) -> str:
    """The hold tag of a queue item's prompt, or ''."""
    try:
        nodes = item[2].values()
    except (AttributeError, IndexError, TypeError):
        return ""
    for node in nodes:
        tag = (node.get("inputs") or {}).get("tag") if isinstance(node, dict) else None
        if isinstance(tag, str) and tag.startswith(HOLD_TAG):
            return tag
    return ""


def _holding(get, port: int):
    def get_and_hold(*args, **kwargs):
        got = get(*args, **kwargs)
        if got is not None and _held_tag(got[0]) == f"{HOLD_TAG}{port}":
            print(f"[tenancy tests] worker held after claiming {got[0][1]}", flush=True)
            threading.Event().wait()  # until the process is killed
        return got
    return get_and_hold


class _HoldingQueue:
    """PromptServer.prompt_queue: kept in the instance, its `get` wrapped whenever a queue is assigned."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __get__(self, server, owner=None):
        return self if server is None else server.__dict__["prompt_queue"]

    def __set__(self, server, queue) -> None:
        queue.get = _holding(queue.get, self.port)
        server.__dict__["prompt_queue"] = queue


def _install_hold() -> None:
    import server
    from comfy.cli_args import args

    hold = _HoldingQueue(args.port)
    server.PromptServer.prompt_queue = hold
    instance = getattr(server.PromptServer, "instance", None)
    if instance is not None and "prompt_queue" in instance.__dict__:
        hold.__set__(instance, instance.__dict__["prompt_queue"])


if os.environ.get("TENANCY_TEST_HOLD_CLAIMED") == "1":
    _install_hold()


def _log_run(tag: str) -> None:
    path = os.environ.get("TENANCY_TEST_RUN_LOG")
    if path and tag:
        with open(path, "a", encoding="utf-8") as log:  # one short append per run: whole lines across processes
            log.write(tag + "\n")


class TenancyTestParams:
    """Echoes plan-restricted parameters so tests can see what reached the node."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    TENANCY_META = {"estimate": {"seconds_input": "duration"}}  # as if it rendered `duration` seconds of video

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "steps": ("INT", {"default": 20, "min": 1, "max": 200}),
            "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0}),
            "duration": ("FLOAT", {"default": 5.0, "min": 0.1, "max": 600.0}),
            "width": ("INT", {"default": 512, "min": 64, "max": 8192}),
            "model_name": ("STRING", {"default": "base.safetensors"}),
        }}

    def run(self, steps, cfg, duration, width, model_name):
        text = f"steps={steps} cfg={cfg} duration={duration} width={width} model={model_name}"
        return {"ui": {"text": [text]}, "result": (text,)}


class TenancyTestSleep:
    """Sleeps in small steps, honouring ComfyUI's interrupt flag."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0}),
                             "tag": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, seconds, tag):
        return time.time()

    def run(self, seconds, tag):
        import comfy.model_management

        _log_run(tag)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.05)
        return {"ui": {"text": [f"slept {seconds}"]}, "result": (tag,)}


class TenancyTestDelay:
    """Passes an image on after `seconds`, honouring the interrupt flag: not an output node, so ComfyUI runs the
    output nodes already ready (a PreviewImage of the same image) before it."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 60.0})}}

    @classmethod
    def IS_CHANGED(cls, images, seconds):
        return time.time()

    def run(self, images, seconds):
        TenancyTestSleep().run(seconds, "")
        return (images,)


class TenancyTestSpin:
    """Keeps ComfyUI's worker thread computing in Python, as a sampler's loop does, honouring the interrupt flag:
    the worker holds the GIL most of the time, which the server's request handling then shares."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0})}}

    @classmethod
    def IS_CHANGED(cls, seconds):
        return time.time()

    def run(self, seconds):
        import comfy.model_management

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            comfy.model_management.throw_exception_if_processing_interrupted()
            sum(i * i for i in range(2000))
        return {}


class TenancyTestTone:
    """`seconds` of quiet audio after `delay` seconds of work: a prompt whose measured output the tests know."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "run"
    TENANCY_META = {"estimate": {"seconds_input": "seconds"}}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 60.0}),
                             "delay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 60.0}),
                             "tag": ("STRING", {"default": ""})}}

    def run(self, seconds, delay, tag):
        import torch

        TenancyTestSleep().run(delay, tag)
        rate = 8000
        return ({"waveform": torch.zeros(1, 1, round(seconds * rate)), "sample_rate": rate},)


class TenancyTestOpenPath:
    """A node that knows nothing of tenancy: reads a file, or lists a folder, at a path given as a plain STRING
    (relative to ComfyUI's input folder, as many packs do), and shows what it found."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""}), "action": (["read", "list"],)}}

    def run(self, path, action):
        import folder_paths

        full = os.path.join(folder_paths.get_input_directory(), path)
        if action == "list":
            text = "\n".join(sorted(os.listdir(full)))
        else:
            with open(full, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        return {"ui": {"text": [text]}, "result": (text,)}


class TenancyTestSecrets:
    """Reports what ComfyUI handed it of a prompt's sensitive extra data (the API-node tokens), as a digest, never
    the value: `auth=<sha256 prefix>|none api_key=<sha256 prefix>|none`."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tag": ("STRING", {"default": ""})},
                "hidden": {"auth_token": "AUTH_TOKEN_COMFY_ORG", "api_key": "API_KEY_COMFY_ORG"}}

    def run(self, tag, auth_token=None, api_key=None):
        import hashlib

        def digest(value):
            return hashlib.sha256(value.encode()).hexdigest()[:16] if value else "none"

        text = f"auth={digest(auth_token)} api_key={digest(api_key)}"
        return {"ui": {"text": [text]}, "result": (text,)}


class TenancyTestPreview:
    """Sends one preview image through ComfyUI's progress hook, as a sampler does between its steps."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tag": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, tag):
        return time.time()

    def run(self, tag):
        import comfy.utils
        from PIL import Image

        comfy.utils.ProgressBar(2).update_absolute(1, 2, ("JPEG", Image.new("RGB", (16, 16), (200, 30, 30)), None))
        return {"ui": {"text": [f"previewed {tag}"]}, "result": (tag,)}


_HELD_MODEL = {"name": ""}  # the one model this process holds


class TenancyTestModel:
    """A prompt's work on a model, with the model's load simulated: `ckpt_name` lists ComfyUI's checkpoints folder
    (so the guard finds it as a model input, as it finds a real loader's). The process holds one model at a time,
    as a GPU with room for one does: a run on another model than the last one first loads it (`load_s` seconds,
    logged as `load:<port>:<model>:<tag>` in TENANCY_TEST_RUN_LOG), then works `seconds`; a run on the held model
    only works. Runs every time (no cached result)."""

    CATEGORY = "tenancy/tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                             "load_s": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 600.0}),
                             "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0}),
                             "tag": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return time.time()

    def run(self, ckpt_name, load_s, seconds, tag):
        from comfy.cli_args import args

        loaded = _HELD_MODEL["name"] != ckpt_name
        if loaded:
            _HELD_MODEL["name"] = ""
            TenancyTestSleep().run(load_s, "")
            _HELD_MODEL["name"] = ckpt_name
            _log_run(f"load:{args.port}:{ckpt_name}:{tag}")
        TenancyTestSleep().run(seconds, tag)
        return {"ui": {"text": [f"{'loaded' if loaded else 'held'} {ckpt_name}"]}, "result": (tag,)}


NODE_CLASS_MAPPINGS = {"TenancyTestParams": TenancyTestParams, "TenancyTestSleep": TenancyTestSleep,
                       "TenancyTestSpin": TenancyTestSpin, "TenancyTestTone": TenancyTestTone,
                       "TenancyTestOpenPath": TenancyTestOpenPath, "TenancyTestSecrets": TenancyTestSecrets,
                       "TenancyTestPreview": TenancyTestPreview, "TenancyTestDelay": TenancyTestDelay,
                       "TenancyTestModel": TenancyTestModel}
