"""Euler sampler of SVD in k-diffusion form: Karras sigmas, v-prediction, continuous timesteps.

Reproduces diffusers `EulerDiscreteScheduler` with the SVD config, including its float32 arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SchedulerConfig:
    """The fields of `scheduler/scheduler_config.json` this sampler honours; defaults are SVD-xt's."""

    prediction_type: str = "v_prediction"
    use_karras_sigmas: bool = True
    timestep_type: str = "continuous"
    sigma_min: float | None = 0.002
    sigma_max: float | None = 700.0


KARRAS_RHO = 7.0


@dataclass(frozen=True)
class Schedule:
    sigmas: torch.Tensor
    """`(steps + 1,)` float32, descending, last 0."""
    timesteps: torch.Tensor
    """`(steps,)` float32 model timesteps `0.25·ln(sigma)`."""


def karras_schedule(config: SchedulerConfig, steps: int) -> Schedule:
    """Noise levels `(sigma_max^(1/rho) + ramp·(sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`, then 0."""
    supported = (
        config.prediction_type == "v_prediction"
        and config.use_karras_sigmas
        and config.timestep_type == "continuous"
        and config.sigma_min is not None
        and config.sigma_max is not None
    )
    if not supported:
        raise ValueError(f"unsupported scheduler config (needs SVD's v-prediction Karras schedule): {config}")
    ramp = np.linspace(0, 1, steps)
    lo, hi = config.sigma_min ** (1 / KARRAS_RHO), config.sigma_max ** (1 / KARRAS_RHO)
    sigmas = (hi + ramp * (lo - hi)) ** KARRAS_RHO
    sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
    # One float32 log per noise level, as diffusers' set_timesteps takes them (a vectorised log over the
    # whole tensor may round differently in the last bit).
    timesteps = torch.stack([0.25 * sigma.log() for sigma in sigmas[:-1]])
    return Schedule(sigmas=sigmas, timesteps=timesteps)


def scale_model_input(sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Input preconditioning `x / sqrt(sigma² + 1)`."""
    return sample / ((sigma**2 + 1) ** 0.5)


def euler_step(
    model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor
) -> torch.Tensor:
    """One Euler step from `sigma` to `sigma_next` for a v-prediction model; computed in float32,
    returned in the model output's dtype."""
    sample = sample.to(torch.float32)
    denoised = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
    derivative = (sample - denoised) / sigma
    return (sample + derivative * (sigma_next - sigma)).to(model_output.dtype)
