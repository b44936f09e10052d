"""Policy mixing: pi_mix = lambda * pi_rm + (1 - lambda) * pibar, legal-masked.

Each input policy is first masked to legal actions and renormalised (uniform over legal
actions where its legal mass is zero), then mixed, then renormalised again for round-off.
Rows without legal actions come back all zero.
"""

from __future__ import annotations

import torch

from armac_spiel.scheduler.network import discrete_logits_to_lambda


def normalise(p: torch.Tensor, legal_mask: torch.Tensor) -> torch.Tensor:
  """Masks to legal actions and renormalises rows; uniform over legal where mass is 0."""
  mask = legal_mask.to(p.dtype)
  p = torch.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0) * mask
  total = p.sum(-1, keepdim=True)
  uniform = mask / mask.sum(-1, keepdim=True).clamp_min(1.0)
  return torch.where(total > 0, p / total.clamp_min(1e-30), uniform)


def sched_lambda(sched_out: dict, lambda_bins, tau: float = 1.0,
                 hard: bool = False) -> torch.Tensor:
  """(B, 1) lambda of either mode's output.

  Discrete, hard: the bin of `lambda_idx` (the net's sample), straight-through so the value
  is that bin and gradients reach the logits; soft: softmax(logits / tau) . bins.
  """
  if sched_out["mode"] == "continuous":
    return sched_out["lambda"]
  logits = sched_out["logits"]
  if not hard:
    return discrete_logits_to_lambda(logits, lambda_bins, hard=False, tau=tau)
  bins = torch.as_tensor(lambda_bins, dtype=logits.dtype).to(logits.device)
  probs = torch.softmax(logits / tau, -1)
  idx = sched_out["lambda_idx"].to(logits.device)
  one_hot = torch.nn.functional.one_hot(idx, probs.shape[-1]).to(probs.dtype)
  return ((one_hot + probs - probs.detach()) @ bins).unsqueeze(-1)


def mix_policies(pi_rm: torch.Tensor, pi_avg: torch.Tensor, sched_out: dict,
                 legal_mask: torch.Tensor, lambda_bins, tau: float = 1.0,
                 hard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
  """(pi_mix (B, A), lam (B, 1)) on pi_rm's device."""
  device = pi_rm.device
  legal_mask = legal_mask.to(device)
  lam = sched_lambda(sched_out, lambda_bins, tau, hard).to(device=device, dtype=pi_rm.dtype)
  mix = lam * normalise(pi_rm, legal_mask) + (1 - lam) * normalise(pi_avg.to(device), legal_mask)
  return normalise(mix, legal_mask), lam


def mixing_stats(lam: torch.Tensor, lambda_bins) -> dict:
  """Lambda mean/std/min/max and the fraction of lambdas nearest each bin."""
  lam = lam.detach().reshape(-1).float()
  bins = torch.as_tensor(lambda_bins, dtype=lam.dtype).to(lam.device)
  if lam.numel() == 0:
    return {"lambda_mean": 0.0, "lambda_std": 0.0, "lambda_min": 0.0, "lambda_max": 0.0,
            "lambda_hist": [0.0] * len(bins)}
  idx = (lam[:, None] - bins[None, :]).abs().argmin(-1)
  hist = torch.bincount(idx, minlength=len(bins)).float() / lam.numel()
  return {"lambda_mean": lam.mean().item(),
          "lambda_std": lam.std(unbiased=False).item(),
          "lambda_min": lam.min().item(), "lambda_max": lam.max().item(),
          "lambda_hist": hist.tolist()}
