"""The past policies j that ARMAC's epochs replay: which one each group of episodes plays,
who learns from it, and the CFR weight its regret targets carry in W's mean.

Policy j is RM(W^j) with its critic q^j, kept in the bounded snapshot buffer
(armac_spiel.networks.SnapshotBank) or current (slot CURRENT). Each epoch draws j per group
(`policy_draw`); since draws are random, the fits divide each j's targets by its realised
number of draws and multiply by CFR's weight of j (uniform, or linear as in LCFR), so every
policy counts as in CFR whatever its draws. DCFR (regret_discount=dcfr) discounts the
running sums instead (armac_spiel/fits.py).
"""

from __future__ import annotations

import numpy as np
import torch

from armac_spiel.config import ARMACConfig
from armac_spiel.networks import SnapshotBank

CURRENT = -1  # slot id of the live (current) networks


def learner_ids(cfg: ARMACConfig, slot_epochs: torch.Tensor, n_players: int) -> torch.Tensor:
  """(B,) learning player of each episode of an epoch, given each group's policy epoch.

  Episodes alternate by batch index (i mod N). With `alternating_updates`, as in CFR with
  alternating updates, the groups that replay policy j estimate the regrets of player
  j mod N only, so player i's regrets at j are measured against the opponent policy that
  already answered i's previous update; the current groups (mean-policy data) keep
  alternating by episode."""
  b, g = cfg.episodes_per_epoch, cfg.groups_per_epoch
  per = b // g
  learner = torch.arange(b) % n_players
  if cfg.alternating_updates:
    past = slot_epochs.repeat_interleave(per) % n_players
    learner = torch.where(torch.arange(b) >= cfg.current_groups * per, past, learner)
  return learner


class CFRWeights:
  """CFR's weight of each policy j in W's mean, divided by how often j was drawn; DCFR's
  discount factors. Shared by the policy draw and W's fits."""

  def __init__(self, cfg: ARMACConfig, n_players: int):
    # With regret_discount=dcfr each epoch counts 1 and the fits discount the sums.
    self.linear = cfg.snapshot_weighting == "linear" and cfg.regret_discount == "none"
    self.alpha, self.beta = cfg.dcfr_alpha, cfg.dcfr_beta
    self.alternating, self.n_players = cfg.alternating_updates, n_players
    self.draws = torch.zeros(0, dtype=torch.float64)  # times each policy epoch was drawn

  def cfr_weight(self, j: torch.Tensor) -> torch.Tensor:
    """(J,) float64 weight of policies j: j + 1 (linear, as in LCFR) or 1."""
    return j.double() + 1.0 if self.linear else torch.ones(len(j), dtype=torch.float64)

  def grow(self, n: int) -> None:
    if len(self.draws) < n:
      self.draws = torch.cat([self.draws, torch.zeros(n - len(self.draws), dtype=torch.float64)])

  def count(self, epochs: torch.Tensor) -> None:
    """Adds one draw for each entry of `epochs` (policy epochs, grown to fit)."""
    self.draws.index_add_(0, epochs, torch.ones(len(epochs), dtype=torch.float64))

  def epoch_factor(self, j: torch.Tensor) -> torch.Tensor:
    """(J,) float64 factor of policy j's targets: its CFR weight over its draws.

    Each epoch draws j from the policies so far, and the targets accumulate over epochs, so
    early policies would dominate (draws[j] ~ log(t / j) with uniform draws). Dividing by
    the realised draw count restores CFR's weighting."""
    self.grow(int(j.max()) + 1 if len(j) else 0)
    return self.cfr_weight(j) / self.draws[j].clamp_min(1.0)

  def sample_weight(self, j: torch.Tensor) -> torch.Tensor:
    """epoch_factor of each row's policy j, in float32 (j within the counted epochs)."""
    return (self.cfr_weight(j) / self.draws[j].clamp_min(1.0)).float()

  def update_index(self, epoch: int) -> int:
    """n of epoch `epoch`'s update: its player's n-th with alternating updates, else epoch."""
    return epoch // self.n_players if self.alternating else epoch

  def updated_player(self, epoch: int) -> int | None:
    """The player whose regrets epoch `epoch` updates (alternating updates), else None."""
    return epoch % self.n_players if self.alternating else None

  def dcfr_factors(self, n: int) -> tuple[float, float]:
    """DCFR's discounts of positive and negative regret sums at a player's n-th update
    (Brown & Sandholm 2019): n^alpha / (n^alpha + 1) and n^beta / (n^beta + 1)."""
    a, b = self.alpha, self.beta
    return n ** a / (n ** a + 1.0), n ** b / (n ** b + 1.0)

  def state_dict(self) -> dict:
    return {"draws": self.draws}

  def load_state_dict(self, d: dict) -> None:
    self.draws = d["draws"]


class PolicyDraw:
  """Policy j per group of an epoch: the first `current_groups` play the current policy,
  the others a past one or the current, drawn uniformly (`policy_draw=uniform`, as in the
  paper), where the regret targets are furthest below j's CFR weight (`balanced`), or
  always the current (`current`)."""

  def __init__(self, cfg: ARMACConfig, bank: SnapshotBank, weights: CFRWeights,
               rng: np.random.Generator):
    self.cfg, self.bank, self.weights, self.rng = cfg, bank, weights, rng

  def slots(self, epoch: int) -> torch.Tensor:
    """(G,) snapshot slot per group (CURRENT: the live networks) at epoch `epoch`."""
    cfg, bank = self.cfg, self.bank
    slots = torch.full((cfg.groups_per_epoch,), CURRENT, dtype=torch.long)
    n_past = cfg.groups_per_epoch - cfg.current_groups
    # Candidates: the kept past policies and the current one (index bank.size).
    if cfg.policy_draw == "current":
      pick = np.full(n_past, bank.size)
    elif cfg.policy_draw == "uniform":
      pick = self.rng.integers(bank.size + 1, size=n_past)
    else:
      pick = self._balanced(n_past, epoch)
    pick[pick == bank.size] = CURRENT
    slots[cfg.current_groups:] = torch.from_numpy(pick)
    return slots

  def _balanced(self, n: int, epoch: int) -> np.ndarray:
    """Draws j where the draws are furthest below j's share of the CFR weights.

    The regret targets then hold each policy's in proportion to its CFR weight, so the
    weights of CFRWeights.sample_weight stay near 1 (an effective sample size ln(t) times
    larger than with uniform draws). Ties are broken at random.
    """
    ep = self.drawable(epoch)
    self.weights.grow(epoch + 1)
    target = self.weights.cfr_weight(ep)
    have = self.weights.draws[ep].clone()
    total = self.weights.draws.sum() + n
    picks = np.empty(n, dtype=np.int64)
    for k in range(n):
      deficit = target / target.sum() * total - have
      deficit += torch.from_numpy(self.rng.random(len(ep))) * 1e-6
      picks[k] = int(deficit.argmax())
      have[picks[k]] += 1
    return picks

  def slot_epochs(self, slots: torch.Tensor, epoch: int) -> torch.Tensor:
    """(G,) policy epoch j of each slot (CURRENT: `epoch`)."""
    return torch.where(slots == CURRENT, torch.tensor(epoch),
                       self.bank.epoch[slots.clamp_min(0)])

  def drawable(self, epoch: int) -> torch.Tensor:
    """Epochs of the policies that can still be drawn: the kept past ones and the current
    (with policy_draw=current: the current only)."""
    if self.cfg.policy_draw == "current":
      return torch.tensor([epoch])
    return torch.cat([self.bank.epoch[:self.bank.size], torch.tensor([epoch])])

  def count(self, slots: torch.Tensor, epoch: int) -> None:
    """Counts the draws of the past groups (the regret groups) of epoch `epoch`."""
    self.weights.grow(epoch + 1)
    self.weights.count(self.slot_epochs(slots[self.cfg.current_groups:], epoch))
