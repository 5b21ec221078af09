"""The GLM-TTS language model: a Hugging Face Llama that continues text with 25 Hz speech tokens.

Input layout (pretrain mode): [prompt text ; text ; <boa> ; prompt speech + ats], then one sampled token
per step with the KV cache until <eoa>; the returned tokens are relative to <|audio_0|>.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .sampling import DEFAULT_SAMPLING, Draws, SamplingConfig, ras_sampling, topk_sampling
from .tokenizer import SpecialTokenIds

StepCallback = Callable[[int, int], None]
"""`callback(step, max_steps)` after every decode step; raise from it to interrupt."""

MIN_TOKEN_TEXT_RATIO = 2
MAX_TOKEN_TEXT_RATIO = 20


def load_llm(path: str | Path, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """LlamaForCausalLM from a local Hugging Face folder (config.json + safetensors shards)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return model.to(device).eval()


def build_input_ids(prompt_text_ids: Sequence[int], text_ids: Sequence[int],
                    prompt_speech_tokens: Sequence[int], ids: SpecialTokenIds) -> torch.Tensor:
    """(1, L) int64 prompt; speech tokens get the `ats` offset only when both prompts are non-empty."""
    offset = ids.ats if len(prompt_text_ids) and len(prompt_speech_tokens) else 0
    seq = [*prompt_text_ids, *text_ids, ids.boa, *(t + offset for t in prompt_speech_tokens)]
    return torch.tensor([seq], dtype=torch.long)


@torch.inference_mode()
def generate_speech_tokens(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    text_len: int,
    ids: SpecialTokenIds,
    draws: Draws,
    sampling: SamplingConfig = DEFAULT_SAMPLING,
    callback: StepCallback | None = None,
) -> list[int]:
    """Sample speech tokens after `input_ids` until <eoa> or 20 tokens per text token.

    Within the first 2 tokens per text token <eoa> is forbidden: RAS masks it, top-k draws again.
    The result is relative to `ats`; out-of-range ids are returned as they are (callers filter them).
    """
    device = next(model.parameters()).device
    embed = model.get_input_embeddings()
    min_len = int(text_len * MIN_TOKEN_TEXT_RATIO)
    max_len = int(text_len * MAX_TOKEN_TEXT_RATIO)
    inputs_embeds = embed(input_ids.to(device))
    past = None
    out: list[int] = []
    for step in range(max_len):
        result = model(inputs_embeds=inputs_embeds, past_key_values=past, use_cache=True, logits_to_keep=1)
        past = result.past_key_values
        logp = result.logits[0, -1].float().log_softmax(dim=-1)
        if sampling.method == "ras":
            if step < min_len:
                logp[ids.eoa] = -float("inf")
            token = ras_sampling(logp, out, draws, sampling)
        else:
            token = topk_sampling(logp, draws, sampling.top_k, ids.eoa, ignore_eos=step < min_len)
        if callback is not None:
            callback(step + 1, max_len)
        if token == ids.eoa:
            break
        out.append(token)
        inputs_embeds = embed(torch.tensor([[token]], device=device))
    return [t - ids.ats for t in out]
