"""Tiny random-weight model sets in the upstream folder layouts, for running the nodes in a real ComfyUI.

Sonic's come from the parity fixtures (the same tiny configurations and weights the parity tests check against
upstream), written the way users lay out `models/sonic`: pickled `.pth` weights, `whisper-tiny/`, `RIFE/`.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from nodes.sonic import Detection, FaceBox

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def _save_pth(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_file(str(source)), target)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)


def write_sonic(models_dir: Path) -> Path:
    """`models_dir/sonic` with every file the Sonic loader reads (no `yoloface_v5m.pt`: faces are then found
    with OpenCV's Haar cascade, which works on real photographs); returns that folder."""
    root = Path(models_dir) / "sonic"
    _save_pth(PARITY / "unet" / "unet.safetensors", root / "unet.pth")
    _copy(PARITY / "unet" / "config.json", root / "unet" / "config.json")
    for name in ("audio2token", "audio2bucket"):
        _save_pth(PARITY / "audio_adapters" / f"{name}.safetensors", root / f"{name}.pth")
    _copy(PARITY / "audio_adapters" / "config.json", root / "audio_adapters.json")
    _copy(PARITY / "whisper_features" / "whisper-tiny-random", root / "whisper-tiny")
    _copy(PARITY / "rife" / "flownet.pkl", root / "RIFE" / "flownet.pkl")
    for folder in ("vae", "image_encoder", "scheduler"):
        _copy(PARITY / "denoise" / folder, root / folder)
    return root


class FixedFaces:
    """An in-process face detector that reports the given boxes, in this order."""

    name = "fixed boxes"

    def __init__(self, *boxes: FaceBox) -> None:
        self.boxes = boxes

    def __call__(self, image: torch.Tensor) -> list[Detection]:
        return [Detection(box, 0.9, ()) for box in self.boxes]


class _FixedFacesScript(torch.nn.Module):
    """Answers like `yoloface_v5m.pt` (`model(image, grids) -> (1, N, 16)`), always with the same faces."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rows", rows)

    def forward(self, image: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        height, width = float(image.shape[2]), float(image.shape[3])
        scale = torch.tensor([width, height, width, height], dtype=self.rows.dtype)
        boxes = self.rows[:, :4] * scale
        marks = self.rows[:, 5:15].reshape(-1, 5, 2) * scale[:2]
        return torch.cat([boxes, self.rows[:, 4:5], marks.reshape(-1, 10), self.rows[:, 15:]], dim=1)[None]


def write_face_detector_stub(path: Path, faces: list[tuple[float, float, float, float]]) -> Path:
    """A TorchScript file with the call signature of `yoloface_v5m.pt` that "detects" `faces`, given as
    `(x, y, w, h)` fractions of the image, with confidence 0.9."""
    rows = []
    for x, y, w, h in faces:
        cx, cy = x + w / 2, y + h / 2
        landmarks = [cx - w / 4, cy - h / 6, cx + w / 4, cy - h / 6, cx, cy, cx - w / 5, cy + h / 4, cx + w / 5,
                     cy + h / 4]
        rows.append([cx, cy, w, h, 0.9, *landmarks, 1.0])
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format yoloface_v5m.pt is in
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(_FixedFacesScript(torch.tensor(rows, dtype=torch.float32).reshape(-1, 16)))
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))
    return path


# -- GLM-TTS ----------------------------------------------------------------------------------------

GLM_TTS_WORDS = ("你好", "我们", "今天", "银行", "天气", "很好")  # single BPE tokens in the tiny tokenizer
GLM_TTS_KEPT_CHARS = "你好我们今天银行气很"  # read as text, not phones, in phoneme mode
GLM_TTS_INITIALS = ["B", "C", "CH", "D", "F", "G", "H", "J", "K", "L", "M", "N", "P", "Q", "R", "S", "SH", "T", "X",
                    "Z", "ZH"]
GLM_TTS_FINALS = ["A", "AI", "AN", "ANG", "AO", "E", "EI", "EN", "ENG", "ER", "I", "IA", "IAN", "IANG", "IAO", "IE",
                  "II", "III", "IN", "ING", "IONG", "IOU", "O", "ONG", "OU", "U", "UA", "UAI", "UAN", "UANG", "UEI",
                  "UEN", "UENG", "UO", "V", "VAN", "VE", "VN"]
GLM_TTS_SEED = 20240601


def write_glm_tts(models_dir: Path, name: str = "GLM-TTS") -> Path:
    """`models_dir/glm_tts/<name>` laid out like upstream (repo checkout with the Hugging Face snapshot in
    `ckpt/`): the parity fixtures' tiny flow, HiFT and speech tokenizer as `flow.pt` + `config.yaml`, `hift.pt`,
    `speech_tokenizer/`; a tiny random Llama sized to a tiny tiktoken tokenizer; a tiny CAM++ `campplus.onnx`
    exported with torch; the G2P tables in `configs/`. Returns that folder."""
    import json

    root = Path(models_dir) / "glm_tts" / name
    ckpt = root / "ckpt"
    vocab = _write_glm_text_tokenizer(ckpt / "vq32k-phoneme-tokenizer")
    _write_glm_llm(ckpt / "llm", vocab)
    flow = json.loads((PARITY / "flow" / "flow_config.json").read_text(encoding="utf-8"))
    _save_pth(PARITY / "flow" / "flow.safetensors", ckpt / "flow" / "flow.pt")
    lines = ["flow: !new:flow.flow.Flow"] + [f"    {k}: {json.dumps(v)}" for k, v in flow["Flow"].items()]
    (ckpt / "flow" / "config.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _save_pth(PARITY / "hift" / "hift.safetensors", ckpt / "hift" / "hift.pt")
    _copy(PARITY / "speech_tokenizer" / "ckpt_speech_tokenizer", ckpt / "speech_tokenizer")
    write_campplus_onnx(root / "frontend" / "campplus.onnx")
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "G2P_able_1word.json").write_text(json.dumps(list(GLM_TTS_KEPT_CHARS), ensure_ascii=False),
                                                          encoding="utf-8")
    (root / "configs" / "G2P_replace_dict.jsonl").write_text('{"乐曲": "<|Y|><|UE4|>曲"}\n', encoding="utf-8")
    return root


def _write_glm_text_tokenizer(folder: Path) -> int:
    """tokenizer.model (all bytes + a few merges) and the added tokens GLM-TTS reads: control tokens, phones,
    <|audio_0..32767|>; returns the vocabulary size."""
    import base64
    import json

    ranks = [bytes([i]) for i in range(256)]
    for word in GLM_TTS_WORDS:
        for ch in word:  # each hanzi merges byte by byte, then the word
            data = ch.encode()
            ranks += [data[:n] for n in range(2, len(data) + 1) if data[:n] not in ranks]
        if word.encode() not in ranks:
            ranks.append(word.encode())
    phones = GLM_TTS_INITIALS + [f"{final}{tone}" for final in GLM_TTS_FINALS for tone in range(1, 6)]
    added = ["<|endoftext|>", "<|user|>", "<|begin_of_audio|>", *(f"<|{p}|>" for p in phones),
             *(f"<|audio_{i}|>" for i in range(32768))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks)), encoding="utf-8")
    table = {str(len(ranks) + i): {"content": token, "special": True} for i, token in enumerate(added)}
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": table}), encoding="utf-8")
    return len(ranks) + len(added)


def _write_glm_llm(folder: Path, vocab: int) -> None:
    """The parity LM's tiny Llama configuration with `vocab` entries, random weights in two shards + index."""
    import json

    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((PARITY / "llm" / "ckpt_llm" / "config.json").read_text(encoding="utf-8"))
    config = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "dtype")}
    torch.manual_seed(GLM_TTS_SEED)
    model = LlamaForCausalLM(LlamaConfig(**{**config, "vocab_size": vocab}))
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    shards = {"model-00001-of-00002.safetensors": [k for k in state if not k.startswith("lm_head")],
              "model-00002-of-00002.safetensors": [k for k in state if k.startswith("lm_head")]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
             "weight_map": {k: file for file, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


class _TinyCampPlus(torch.nn.Module):
    """CAM++'s interface: (1, frames, 80) mean-normalised fbank -> (1, 192) speaker embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(80, 192)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(features.mean(dim=1)))


def write_campplus_onnx(path: Path) -> Path:
    """A tiny random CAM++ stand-in exported with torch's ONNX exporter (input "input", output "output")."""
    import warnings

    torch.manual_seed(GLM_TTS_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(_TinyCampPlus().eval(), (torch.randn(1, 50, 80),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {1: "frames"}}, dynamo=False)
    return path
