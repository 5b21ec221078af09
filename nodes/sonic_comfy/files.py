"""Where Sonic's files sit under `models/sonic` (every folder ComfyUI knows for "sonic", extra_model_paths.yaml
included), resolved to `SonicPaths`; a missing file is reported by name, with the folders it may go in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..sonic import SonicPaths

FOLDER = "sonic"
LICENCE = "Sonic's weights are CC BY-NC-SA 4.0: non-commercial use only."
AUTO = "auto"

UNET = ("unet.safetensors", "unet.pth")
AUDIO2TOKEN = ("audio2token.safetensors", "audio2token.pth")
AUDIO2BUCKET = ("audio2bucket.safetensors", "audio2bucket.pth")
WHISPER = ("whisper-tiny",)
VAE = ("vae",)
IMAGE_ENCODER = ("image_encoder",)
RIFE = ("RIFE/flownet.safetensors", "RIFE/flownet.pkl")
FACE_DETECTOR = "yoloface_v5m.pt"
UNET_CONFIG = "unet/config.json"
"""Optional: the SVD `unet/config.json` the weights were made for (SVD-xt's sizes when absent)."""
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
ADAPTER_CONFIG = "audio_adapters.json"
"""Optional: `{"audio2token": {...}, "audio2bucket": {...}}` constructor sizes (the released ones when absent)."""
MEL_CONFIG = "whisper-tiny/preprocessor_config.json"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
NOT_A_UNET = ("audio2token", "audio2bucket", "yoloface")


class MissingSonicFile(FileNotFoundError):
    """A model file the node needs is in none of the Sonic folders; the message says which and where."""

    def __init__(self, what: str, names: tuple[str, ...], roots: tuple[Path, ...], alternative: str = "") -> None:
        where = ", ".join(str(r) for r in roots) or "models/sonic"
        also = f" ({alternative})" if alternative else ""
        super().__init__(f"Sonic {what} not found: put {' or '.join(names)} in {where}{also}")


@dataclass(frozen=True)
class SonicFolder:
    """The configured `sonic` model folders, searched in order."""

    roots: tuple[Path, ...]

    @classmethod
    def from_comfy(cls) -> SonicFolder:
        from ..shared_comfy.model_folders import roots

        return cls(tuple(roots(FOLDER)))

    def find(self, *names: str) -> Path | None:
        for name in names:
            for root in self.roots:
                if (root / name).exists():
                    return root / name
        return None

    def require(self, what: str, names: tuple[str, ...], alternative: str = "") -> Path:
        found = self.find(*names)
        if found is None:
            raise MissingSonicFile(what, names, self.roots, alternative)
        return found

    def unet_choices(self) -> list[str]:
        """`auto` plus every top-level weights file that is not one of the other Sonic models."""
        names = {
            p.name
            for root in self.roots
            if root.is_dir()
            for p in root.iterdir()
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not p.name.startswith(NOT_A_UNET)
        }
        return [AUTO, *sorted(names)]

    def paths(self, unet: str = AUTO, vae_folder: bool = True, image_encoder_folder: bool = True) -> SonicPaths:
        """Every file the loader needs; `vae_folder`/`image_encoder_folder` False when ComfyUI supplies them."""
        svd = "connect the VAE and CLIP_VISION outputs of ImageOnlyCheckpointLoader with an SVD checkpoint instead"
        return SonicPaths(
            unet=self.require("UNet", UNET if unet == AUTO else (unet,), "convert a .pth once with "
                              "`python -m nodes.sonic.convert unet.pth`"),
            audio2token=self.require("audio2token", AUDIO2TOKEN),
            audio2bucket=self.require("audio2bucket", AUDIO2BUCKET),
            vae_dir=self.require("VAE folder", VAE, svd) if vae_folder else None,
            image_encoder_dir=self.require("image encoder folder", IMAGE_ENCODER, svd) if image_encoder_folder
            else None,
            whisper_dir=self.require("Whisper encoder folder", WHISPER),
            unet_config=self.find(UNET_CONFIG),
            scheduler_config=self.find(SCHEDULER_CONFIG),
            adapter_config=self.find(ADAPTER_CONFIG),
            rife=self.find(*RIFE),
        )

    def face_detector(self) -> Path | None:
        return self.find(FACE_DETECTOR)

    def mel_config(self) -> Path | None:
        return self.find(MEL_CONFIG)
