"""The scheduler network: a per-state lambda for pi_mix = lambda * pi_rm + (1 - lambda) * pibar.

ARMAC (arXiv 2008.12234) with a learned mixing schedule. An MLP over information-state
tensors outputs either
- continuous: `{"mode": "continuous", "lambda": (B, 1)}`, sigmoid clamped to
  [lam_clamp_eps, 1 - lam_clamp_eps]; or
- discrete: `{"mode": "discrete", "logits": (B, K), "lambda_idx": (B,) long}` over the K
  lambda bins; logits are the head's output divided by `temperature`; the index is a
  Gumbel-softmax (tau(iteration)) sample in training (a plain categorical sample when
  use_gumbel is false) and the argmax in inference.
During the first scheduler_warmup_iters iterations the output is frozen: lambda = init_lambda,
or constant logits (0 on the bin nearest init_lambda, -WARMUP_MARGIN elsewhere).
Gumbel temperature is annealed geometrically:
tau(t) = tau_start * (tau_end / tau_start) ** min(1, t / gumbel_anneal_iters).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from armac_spiel.scheduler.config import SchedulerConfig

WARMUP_MARGIN = 20.0


def gumbel_tau(cfg: SchedulerConfig, iteration: int) -> float:
  """Geometric interpolation from gumbel_tau_start to gumbel_tau_end, constant after."""
  if cfg.gumbel_anneal_iters <= 0:
    return cfg.gumbel_tau_end
  frac = min(1.0, max(0.0, iteration / cfg.gumbel_anneal_iters))
  return cfg.gumbel_tau_start * (cfg.gumbel_tau_end / cfg.gumbel_tau_start) ** frac


def nearest_bin(lambda_bins: Sequence[float], value: float) -> int:
  return min(range(len(lambda_bins)), key=lambda k: abs(lambda_bins[k] - value))


def discrete_logits_to_lambda(logits: torch.Tensor, lambda_bins, hard: bool = False,
                              tau: float = 1.0) -> torch.Tensor:
  """(B, 1) lambda = softmax(logits / tau) . bins; hard: straight-through argmax bin.

  Computed on the logits' device (bins are moved there); gradients reach the logits.
  """
  bins = torch.as_tensor(lambda_bins, dtype=logits.dtype).to(logits.device)
  probs = F.softmax(logits / tau, dim=-1)
  if hard:
    one_hot = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    probs = one_hot + probs - probs.detach()
  return (probs @ bins).unsqueeze(-1)


class SchedulerNet(nn.Module):
  """MLP scheduler; `mode` is "continuous" or "discrete"."""

  def __init__(self, input_size: int, cfg: SchedulerConfig = SchedulerConfig(),
               mode: str = "discrete"):
    super().__init__()
    if mode not in ("continuous", "discrete"):
      raise ValueError(f"SchedulerNet mode must be continuous|discrete, got {mode!r}")
    self.cfg = cfg
    self.mode = mode
    self.num_bins = len(cfg.k_bins)
    layers, width = [], input_size
    for h in cfg.hidden:
      layers += [nn.Linear(width, h), nn.ReLU()]
      width = h
    self.body = nn.Sequential(*layers)
    self.head = nn.Linear(width, 1 if mode == "continuous" else self.num_bins)
    self.register_buffer("lambda_bins", torch.tensor(cfg.k_bins, dtype=torch.float32))
    # The iteration the trainer has reached; decides warm-up and tau. Saved with the weights.
    self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
    self.warm_idx = nearest_bin(cfg.k_bins, cfg.init_lambda)

  def tau(self, iteration: int | None = None) -> float:
    return gumbel_tau(self.cfg, int(self.iteration) if iteration is None else iteration)

  def in_warmup(self, iteration: int | None = None) -> bool:
    it = int(self.iteration) if iteration is None else iteration
    return it < self.cfg.scheduler_warmup_iters

  def forward(self, x: torch.Tensor, training: bool | None = None,
              iteration: int | None = None) -> dict:
    training = self.training if training is None else training
    b = x.shape[0]
    if self.in_warmup(iteration):
      if self.mode == "continuous":
        return {"mode": "continuous",
                "lambda": x.new_full((b, 1), self.cfg.init_lambda)}
      logits = x.new_full((b, self.num_bins), -WARMUP_MARGIN)
      logits[:, self.warm_idx] = 0.0
      return {"mode": "discrete", "logits": logits,
              "lambda_idx": torch.full((b,), self.warm_idx, dtype=torch.long, device=x.device)}
    out = self.head(self.body(x))
    if self.mode == "continuous":
      eps = self.cfg.lam_clamp_eps
      return {"mode": "continuous", "lambda": torch.sigmoid(out).clamp(eps, 1.0 - eps)}
    logits = out / self.cfg.temperature
    with torch.no_grad():
      if not training:
        idx = logits.argmax(-1)
      elif self.cfg.use_gumbel:
        idx = F.gumbel_softmax(logits, tau=self.tau(iteration), hard=True).argmax(-1)
      else:
        idx = torch.multinomial(F.softmax(logits, -1), 1).squeeze(-1)
    return {"mode": "discrete", "logits": logits, "lambda_idx": idx}

  def regularizer(self, sched_out: dict) -> torch.Tensor:
    """beta_l2 * sum ||w||^2 - beta_ent * mean entropy of the output distribution."""
    reg = self.cfg.regularization
    l2 = sum((p * p).sum() for p in self.parameters())
    if sched_out["mode"] == "discrete":
      logp = F.log_softmax(sched_out["logits"], -1)
      ent = -(logp.exp() * logp).sum(-1).mean()
    else:
      lam = sched_out["lambda"]
      ent = -(lam * lam.log() + (1 - lam) * (1 - lam).log()).mean()
    return reg.beta_l2 * l2 - reg.beta_ent * ent
