"""Test-only ComfyUI nodes (never shipped): parameters for the policy to act on, a slow node, a busy one, one
that makes audio of a known length, one that opens whatever path it is given and one that reports (as digests)
the API-node tokens it was handed, and one that sends a preview."""

import os
import time


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

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.05)
        return {"ui": {"text": [f"slept {seconds}"]}, "result": (tag,)}


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


NODE_CLASS_MAPPINGS = {"TenancyTestParams": TenancyTestParams, "TenancyTestSleep": TenancyTestSleep,
                       "TenancyTestSpin": TenancyTestSpin, "TenancyTestTone": TenancyTestTone,
                       "TenancyTestOpenPath": TenancyTestOpenPath, "TenancyTestSecrets": TenancyTestSecrets,
                       "TenancyTestPreview": TenancyTestPreview}
