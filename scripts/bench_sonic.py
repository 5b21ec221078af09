"""Sonic with full-size random weights: cold run (load + preprocess + sample + interpolate) vs warm run (models
from the node cache), time and peak memory, through the same code the ComfyUI nodes run.

Writes the released sizes and layouts once into --models (about 10 GB: unet.pth fp32, CLIP ViT-H, SVD VAE, ...),
then measures in a fresh process. On a CPU the clip and the resolution are kept small (one 25-frame window at
64 px); the full-size figure (512 px, 25 steps, 10 s) is estimated and left for a GPU run.
Usage: .venv/bin/python scripts/bench_sonic.py [--models DIR] [--steps 2] [--resolution 64] [--duration 0.6]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
import wave
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodes.sonic.audio_adapters import (  # noqa: E402
    Audio2BucketConfig,
    Audio2BucketModel,
    AudioProjConfig,
    AudioProjModel,
)
from nodes.sonic.rife import IFNet  # noqa: E402
from nodes.sonic.unet import SonicUNet, UNetConfig  # noqa: E402
from nodes.sonic.vae import TemporalVAE, VAEConfig  # noqa: E402
from nodes.sonic.whisper import WhisperEncoder, WhisperEncoderConfig  # noqa: E402
from nodes.sonic.whisper_features import MelConfig  # noqa: E402

MEDIA = REPO / "tests" / "fixtures" / "media"
DONE = "complete.json"
CLIP_VIT_H = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
              "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu"}
FULL_RUN = {"resolution": 512, "steps": 25, "seconds": 10.0}


def random_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights of `module` (built on the meta device) drawn at random: matrices N(0, 0.02), norms 1, biases 0."""
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() > 1:
                param.normal_(0, 0.02)
            else:
                param.fill_(1.0 if name.endswith("weight") and "norm" in name else 0.0)
    return module.state_dict()


def built(factory) -> torch.nn.Module:
    with torch.device("meta"):
        return factory()


def write_models(root: Path) -> None:
    """The released checkpoints' keys, shapes and formats, with random values."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def save_json(path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))

    root.mkdir(parents=True, exist_ok=True)
    torch.save(random_state(built(lambda: SonicUNet(UNetConfig()))), root / "unet.pth")
    torch.save(random_state(built(lambda: AudioProjModel(AudioProjConfig()))), root / "audio2token.pth")
    torch.save(random_state(built(lambda: Audio2BucketModel(Audio2BucketConfig()))), root / "audio2bucket.pth")
    whisper = WhisperEncoderConfig()
    state = random_state(built(lambda: WhisperEncoder(whisper)))
    save_json(root / "whisper-tiny" / "config.json", {**whisper.__dict__, "model_type": "whisper"})
    save_json(root / "whisper-tiny" / "preprocessor_config.json", MelConfig().__dict__)
    save_file({f"model.encoder.{k}": v.contiguous() for k, v in state.items()},
              str(root / "whisper-tiny" / "model.safetensors"))
    state = random_state(built(lambda: TemporalVAE(VAEConfig())))
    save_json(root / "vae" / "config.json", {**VAEConfig().__dict__, "_class_name": "AutoencoderKLTemporalDecoder"})
    save_file({k: v.half().contiguous() for k, v in state.items()},
              str(root / "vae" / "diffusion_pytorch_model.fp16.safetensors"))
    config = CLIPVisionConfig(**CLIP_VIT_H)
    state = random_state(built(lambda: CLIPVisionModelWithProjection(config)))
    config.save_pretrained(root / "image_encoder")
    save_file({k: v.half().contiguous() for k, v in state.items()},
              str(root / "image_encoder" / "model.fp16.safetensors"))
    (root / "RIFE").mkdir(exist_ok=True)
    torch.save({f"module.{k}": v for k, v in random_state(built(lambda: IFNet(90))).items()},
               root / "RIFE" / "flownet.pkl")
    sizes = {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    save_json(root / DONE, sizes)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(root: Path, steps: int, resolution: int, duration: float, dtype: str) -> dict:
    """Runs in a fresh process: import ComfyUI (dev checkout), cold run, warm run."""
    import numpy as np
    from PIL import Image

    from tenancy.installation import DEV_COMFYUI

    sys.path.append(str(DEV_COMFYUI))
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    from nodes.sonic.haar_detect import HaarFaces
    from nodes.sonic_comfy import models as sonic_models
    from nodes.sonic_comfy.files import SonicFolder
    from nodes.sonic_comfy.steps import prepare, render

    portrait = torch.from_numpy(np.asarray(Image.open(MEDIA / "portrait_astronaut_256.png").convert("RGB")) / 255.0)
    with wave.open(str(MEDIA / "speech_en_16k.wav")) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768
    speech = {"waveform": torch.from_numpy(pcm)[None, None], "sample_rate": 16000}
    folder, detector = SonicFolder((root,)), HaarFaces()
    phases: list[list[float]] = []  # callback times: denoising windows, then RIFE pairs

    def progress(total):
        phases.append([time.perf_counter()])
        return lambda done, steps_: phases[-1].append(time.perf_counter())

    def run() -> dict:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        loaded = sonic_models.load(folder, "auto", dtype)
        loaded_at = time.perf_counter()
        prepared, _ = prepare(portrait.float(), speech, duration, resolution, 0.5, detector)
        phases.clear()
        result = render(sonic_models.on_device(loaded), prepared, 0, steps, 1.0, 1.0, interpolate_frames=True,
                        progress=progress)
        return {
            "seconds": time.perf_counter() - started,
            "load_seconds": loaded_at - started,
            "unet_eval_seconds": (phases[0][-1] - phases[0][1]) / (len(phases[0]) - 2) if steps > 1 else None,
            "first_window_seconds": phases[0][1] - phases[0][0],
            "frames": int(result.frames.shape[0]),
            "size": list(result.frames.shape[1:3]),
            "dtype": str(loaded.models.dtype),
            "device": str(loaded.patcher.load_device),
            "peak_rss_gb": peak_rss_gb(),
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None,
        }

    return {"cold": run(), "warm": run(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("/tmp/sonic-bench-models"))
    parser.add_argument("--steps", type=int, default=2, help="at least 2: the second window is the one timed")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--duration", type=float, default=0.6)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.steps < 2:
        parser.error("--steps must be at least 2 (the second UNet window is the one timed)")
    if options.measure_only:
        print(json.dumps(measure(options.models, options.steps, options.resolution, options.duration, options.dtype)))
        return
    if not (options.models / DONE).exists():
        started = time.perf_counter()
        write_models(options.models)
        print(f"wrote full-size random checkpoints to {options.models} in {time.perf_counter() - started:.0f} s")
    sizes = json.loads((options.models / DONE).read_text())
    print(f"checkpoints: {sum(sizes.values()) / 1e9:.2f} GB ({sizes['unet.pth'] / 1e9:.2f} GB unet.pth)")
    child = subprocess.run([sys.executable, __file__, "--measure-only", *sys.argv[1:]], capture_output=True, text=True,
                           cwd=REPO)
    if child.returncode != 0:
        raise SystemExit(child.stderr[-3000:])
    result = json.loads(child.stdout.strip().splitlines()[-1])
    for phase in ("cold", "warm"):
        r = result[phase]
        gpu = f", peak GPU {r['peak_gpu_gb']:.2f} GB" if r["peak_gpu_gb"] is not None else ""
        print(f"{phase}: {r['seconds']:.1f} s (model load {r['load_seconds']:.1f} s, {r['unet_eval_seconds']:.1f} s "
              f"per UNet window), {r['frames']} frames of {r['size'][1]}x{r['size'][0]}, {r['dtype']} on "
              f"{r['device']} ({result['threads']} threads), peak RSS {r['peak_rss_gb']:.2f} GB{gpu}")
    windows = math.ceil(int(FULL_RUN["seconds"] * 25) // 2 / 25)
    area = (FULL_RUN["resolution"] / options.resolution) ** 2
    estimate = result["warm"]["unet_eval_seconds"] * area * windows * FULL_RUN["steps"]
    print(f"not run here: {FULL_RUN['seconds']:.0f} s of video at {FULL_RUN['resolution']} px with "
          f"{FULL_RUN['steps']} steps = {windows * FULL_RUN['steps']} UNet windows, at least "
          f"{estimate / 3600:.0f} h on this device by area scaling alone (attention grows faster): "
          f"left for a GPU run with --resolution {FULL_RUN['resolution']} --steps {FULL_RUN['steps']} "
          f"--duration {FULL_RUN['seconds']:.0f}")


if __name__ == "__main__":
    main()
