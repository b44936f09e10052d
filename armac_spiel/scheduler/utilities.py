"""Utilities of the K lambda bins, (B, K), the meta-regret manager's learning signal.

- best_response (exact, on the compiled tree): with pi_mix = lam pi_rm + (1 - lam) pibar at
  every information state s of player p, b* the other player's best response to pi_mix and
  cfv_p(s, a) p's counterfactual values against b* (games.tree.GameTree.best_response_cfv),
  u_k(s) = sum_a pi_mix^(k)(s, a) cfv_p(s, a). Since exploitability = sum over players of
  best-response values / 2 and b* is a best response, d expl / d lam(s) =
  -own_reach_p(s) / 2 * (u_k - u_j) / (bins_k - bins_j) for any two bins (envelope theorem;
  u is linear in lam). Regret matching over the bins against b*, re-solved each update, is
  CFR-BR (Johanson et al. 2012) on the segment between pibar and pi_rm.
- br_critic (model-free): the same with cfv replaced by the Q-values of a critic trained on
  episodes where the opponent best-responds to pi_mix (armac_spiel.scheduler.br_critic).
- immediate: u = G - b for the bin the episode used, G = sum_t gamma^t r_t the discounted
  return and b the mean of the last baseline_window returns (0 until min_samples returns
  were seen; the batch is pushed after its own baseline is read). The other bins get 0 (no
  better than the baseline) or, with `bin_probs`, the used bin gets (G - b) / p(bin)
  (importance-weighted bandit estimate).
- advantage_based: u_k = E_{a ~ pi_mix(k)}[A(s, a)], pi_mix(k) = bins_k pi_rm + (1 - bins_k)
  pibar with both policies legal-masked and renormalised first (so mixing is linear), and
  A(s, a) = q(s, a) - sum_b pi_base(b) q(s, b) where pi_base is pi_mix at the scheduler's
  current lambda `lam` (B, 1) when given, else pi_rm. The baseline shifts all bins equally,
  so the regrets do not depend on it.
- hybrid: 0.5 * immediate + 0.5 * advantage_based.
advantage_based and hybrid feed the manager the mean of each key's utilities over the last
advantage_window updates (a FIFO of batches; the manager averages duplicate keys).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import torch

from armac_spiel.scheduler.config import UtilityConfig
from armac_spiel.scheduler.mixer import normalise


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
  """(B,) sum_t gamma^t r_t of (B, T) rewards (pad with zeros)."""
  t = torch.arange(rewards.shape[-1], device=rewards.device, dtype=rewards.dtype)
  return (rewards * gamma ** t).sum(-1)


def advantage_utilities(q: torch.Tensor, pi_rm: torch.Tensor, pi_avg: torch.Tensor,
                        legal_mask: torch.Tensor, lambda_bins,
                        lam: torch.Tensor | None = None) -> torch.Tensor:
  """(B, K) u_k = E_{a ~ pi_mix(k)}[q(s, a) - V_base(s)], on q's device."""
  mask = legal_mask.to(q.device)
  q = torch.where(mask, torch.nan_to_num(q), torch.zeros_like(q))
  p_rm, p_avg = normalise(pi_rm.to(q.device), mask), normalise(pi_avg.to(q.device), mask)
  base = p_rm if lam is None else lam.to(q.device) * p_rm + (1 - lam.to(q.device)) * p_avg
  adv = q - (base * q).sum(-1, keepdim=True)
  a_rm, a_avg = (p_rm * adv).sum(-1, keepdim=True), (p_avg * adv).sum(-1, keepdim=True)
  bins = torch.as_tensor(lambda_bins, dtype=q.dtype).to(q.device)
  return bins * a_rm + (1 - bins) * a_avg


def bin_utilities(values: torch.Tensor, pi_rm: torch.Tensor, pi_avg: torch.Tensor,
                  legal_mask: torch.Tensor, lambda_bins) -> torch.Tensor:
  """(B, K) u_k = sum_a pi_mix^(k)(a) values(a) for every bin at once; `values` (B, A) are
  counterfactual values (best_response) or Q-values (br_critic)."""
  mask = legal_mask.to(values.device)
  v = torch.where(mask, values, torch.zeros_like(values))
  p_rm = normalise(pi_rm.to(v.device, v.dtype), mask)
  p_avg = normalise(pi_avg.to(v.device, v.dtype), mask)
  return _mixed_values(v, p_rm, p_avg, lambda_bins)


def _mixed_values(v: torch.Tensor, p_rm: torch.Tensor, p_avg: torch.Tensor,
                  lambda_bins) -> torch.Tensor:
  """(B, K) bins_k (p_rm . v) + (1 - bins_k) (p_avg . v)."""
  a_rm, a_avg = (p_rm * v).sum(-1, keepdim=True), (p_avg * v).sum(-1, keepdim=True)
  bins = torch.as_tensor(lambda_bins, dtype=v.dtype).to(v.device)
  return bins * a_rm + (1 - bins) * a_avg


class ExactParts(NamedTuple):
  """pi_rm and pibar prepared once for the iterations of an exact update (CPU float64):
  legal-masked and normalised (what pi_mix mixes), and normalised once more (what
  bin_utilities weighs the values with)."""
  rm: torch.Tensor          # (S, A)
  avg: torch.Tensor         # (S, A)
  rm_values: torch.Tensor   # (S, A)
  avg_values: torch.Tensor  # (S, A)


def exact_parts(legal_mask: torch.Tensor, pi_rm: torch.Tensor,
                pi_avg: torch.Tensor) -> ExactParts:
  """ExactParts of the tables (S, A) (unnormalised, any device)."""
  rm = normalise(pi_rm.detach().to("cpu", torch.float64), legal_mask)
  avg = normalise(pi_avg.detach().to("cpu", torch.float64), legal_mask)
  return ExactParts(rm, avg, normalise(rm, legal_mask), normalise(avg, legal_mask))


def exact_utilities(tree, parts: ExactParts, lam: torch.Tensor, lambda_bins):
  """Exact bin utilities at every information state of `tree` (S, K), and the
  games.tree.BestResponseCFV of pi_mix = lam pi_rm + (1 - lam) pibar (`parts`, lam (S, 1));
  see the module docstring. One counterfactual-value pass gives every bin at every state."""
  mask = tree.info_legal
  lam = lam.detach().to("cpu", torch.float64).reshape(-1, 1)
  res = tree.best_response_cfv(normalise(lam * parts.rm + (1 - lam) * parts.avg, mask))
  v = torch.where(mask, res.cfv, torch.zeros_like(res.cfv))
  return _mixed_values(v, parts.rm_values, parts.avg_values, lambda_bins), res


def best_response_utilities(tree, pi_rm: torch.Tensor, pi_avg: torch.Tensor,
                            lam: torch.Tensor, lambda_bins):
  """exact_utilities of the tables (S, A) pi_rm and pibar (any device, unnormalised)."""
  return exact_utilities(tree, exact_parts(tree.info_legal, pi_rm, pi_avg), lam, lambda_bins)


class UtilityComputer:
  """Computes bin utilities; holds the moving-average return baseline (a ring buffer)."""

  def __init__(self, cfg: UtilityConfig = UtilityConfig(), device="cpu"):
    self.cfg = cfg
    self.device = torch.device(device)
    self.buffer = torch.zeros(cfg.baseline_window, device=self.device)
    self.count = 0   # returns in the buffer (<= window)
    self.pos = 0     # next write slot
    self.window = collections.deque(maxlen=cfg.advantage_window)  # (keys, (B, K)) batches

  def windowed(self, keys: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pushes (keys, u) and returns the last advantage_window batches concatenated."""
    self.window.append((keys.detach().reshape(-1).cpu(), u.detach().cpu()))
    return (torch.cat([k for k, _ in self.window]),
            torch.cat([x for _, x in self.window]).to(u.device))

  def baseline(self) -> float:
    if self.count == 0 or self.count < self.cfg.min_samples:
      return 0.0
    return self.buffer[:self.count].mean().item()

  def push(self, returns: torch.Tensor) -> None:
    w = self.cfg.baseline_window
    vals = returns.detach().reshape(-1).to(self.device, torch.float32)[-w:]
    n = vals.shape[0]
    idx = (self.pos + torch.arange(n, device=self.device)) % w
    self.buffer[idx] = vals
    self.pos = (self.pos + n) % w
    self.count = min(w, self.count + n)

  def immediate(self, chosen_idx: torch.Tensor, num_bins: int,
                returns: torch.Tensor | None = None, rewards: torch.Tensor | None = None,
                bin_probs: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K): (G - baseline) on the used bin, 0 elsewhere; G from returns or rewards."""
    if returns is None:
      if rewards is None:
        raise ValueError("immediate utility needs `returns` (B,) or `rewards` (B, T)")
      returns = discounted_returns(rewards, self.cfg.gamma)
    g = returns.reshape(-1).float()
    adv = g - self.baseline()
    self.push(g)
    idx = chosen_idx.reshape(-1).to(g.device)
    if bin_probs is not None:
      p = bin_probs.to(g.device).gather(1, idx[:, None]).squeeze(1)
      adv = adv / p.clamp_min(1e-6)
    u = torch.zeros((g.shape[0], num_bins), device=g.device)
    return u.scatter(1, idx[:, None], adv[:, None])

  def compute(self, lambda_bins, *, q=None, pi_rm=None, pi_avg=None, legal_mask=None,
              lam=None, chosen_idx=None, returns=None, rewards=None,
              bin_probs=None) -> torch.Tensor:
    """(B, K) utilities of the configured utility_type."""
    kind = self.cfg.kind
    if kind not in ("advantage_based", "immediate", "hybrid"):
      raise ValueError(f"UtilityComputer.compute handles sampled utilities only, not {kind}")
    parts = []
    if kind in ("advantage_based", "hybrid"):
      if q is None or pi_rm is None or pi_avg is None or legal_mask is None:
        raise ValueError(f"utility_type={kind} needs q, pi_rm, pi_avg and legal_mask")
      parts.append(advantage_utilities(q, pi_rm, pi_avg, legal_mask, lambda_bins, lam))
    if kind in ("immediate", "hybrid"):
      if chosen_idx is None:
        raise ValueError(f"utility_type={kind} needs chosen_idx (the bin each episode used)")
      parts.append(self.immediate(chosen_idx, len(lambda_bins), returns, rewards, bin_probs))
    if kind == "hybrid":
      return 0.5 * parts[1].to(parts[0].device) + 0.5 * parts[0]
    return parts[0]

  def state_dict(self) -> dict:
    return {"buffer": self.buffer.clone(), "count": self.count, "pos": self.pos,
            "window": [(k.clone(), u.clone()) for k, u in self.window]}

  def load_state_dict(self, sd: dict) -> None:
    self.buffer.copy_(sd["buffer"])
    self.count, self.pos = int(sd["count"]), int(sd["pos"])
    self.window.clear()
    self.window.extend(sd.get("window", []))


def compute_utilities(cfg: UtilityConfig, computer: UtilityComputer | None = None,
                      **inputs) -> torch.Tensor:
  """Dispatches on cfg.utility_type; `inputs` as UtilityComputer.compute (lambda_bins, ...)."""
  if computer is None:
    computer = UtilityComputer(cfg)
  elif computer.cfg != cfg:
    raise ValueError("compute_utilities: computer was built with a different UtilityConfig")
  return computer.compute(**inputs)
