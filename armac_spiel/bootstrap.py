"""Bootstrapped cumulative regrets for W (regret_fit=bootstrap): no replay of past targets.

CFR accumulates each iteration's counterfactual regrets, C_{t+1}(s) = d_t(s) * C_t(s) +
c_t * r_t(s) (d = 1 and c_t = 1 or t + 1 for CFR and linear CFR; DCFR discounts positive
and negative sums). `regret_fit=rows` makes W the weighted mean of every past target row
(a reservoir that SGD must average); `states` keeps that mean per information-state id.
Here W itself carries the sum, as in VR-DeepDCFR+ / PDCFR+ (arXiv 2511.08174): epoch t's
target for W is d_t * C_t + c_t * S_t, with C_t read back from W (W_t = C_t / Z_t, Z_t a
global scale chosen so that the targets have unit RMS) and

  S_t(x) = sum over epoch t's learner rows r with encoding x of w_r * r_t(x),

the sampled regrets summed per distinct information-state encoding within the epoch
(ARMAC's targets carry the opponent's and chance's reach through how often x is sampled,
and w corrects the learner's own reach to uniform, so E[S_t(x)] is x's counterfactual
regret times a factor of x that does not change with t; an x not sampled adds 0, as in
MCCFR). Regret matching ignores per-state positive factors.

What is kept between epochs is W and a bounded memory of the distinct encodings seen (with
legal masks and acting player), on which W is re-fitted each epoch so that states not
sampled keep their sums. No table of targets is kept and nothing needs information-state
ids: the same code serves the pyspiel sampler, on any game with information-state tensors.
The loss weights each state by 1 / (its target's mean square + floor), i.e. relative error,
as `states` fits unit-RMS targets: rarely sampled states have small sums but equal say.

Needs policy_draw=current: every regret row of epoch t comes from pi^t, so S_t is final
when W is fitted.
"""

from __future__ import annotations

import torch

# Floor of the per-state mean-square target in the relative loss weights (targets have unit
# RMS over all states), so that a state with all-zero sums does not get infinite weight.
REL_FLOOR = 1e-3


class CumulativeRegrets:
  """The encoding memory and global scale of regret_fit=bootstrap (see module doc)."""

  def __init__(self, capacity: int):
    self.capacity = capacity
    self.info = torch.zeros(0, 0)
    self.mask = torch.zeros(0, 0, dtype=torch.bool)
    self.player = torch.zeros(0, dtype=torch.long)
    self.seen = torch.zeros(0, dtype=torch.long)  # last epoch each encoding was sampled
    self.scale = 0.0  # Z_t: W_t = C_t / Z_t; 0 before the first epoch (C_0 = 0)

  def __len__(self) -> int:
    return len(self.seen)

  def epoch_targets(self, regret_net, epoch: int, learner_player: int | None,
                    info: torch.Tensor, mask: torch.Tensor, player: torch.Tensor,
                    adv: torch.Tensor, weight: torch.Tensor, *, weight_t: float,
                    discount: tuple[float, float] | None, plus: bool = False):
    """Folds epoch `epoch`'s learner rows (encodings (R, D), legal masks (R, A), acting
    players (R,), regret targets (R, A), reach weights (R,)) into the memory and returns
    W's regression set (encodings (M, D), targets (M, A), masks (M, A), state weights (M,)).

    learner_player: the player whose sums this epoch updates (alternating updates), None for
    all. weight_t: c_t. discount: DCFR's (positive, negative) factors d_t, None for 1.
    plus: clip the updated sums at 0 (RM+, as in CFR+ and DCFR+).
    """
    dev = info.device
    uniq, inv = torch.unique(info, dim=0, return_inverse=True)
    s = torch.zeros(len(uniq), adv.shape[1], dtype=torch.float64, device=dev)
    s.index_add_(0, inv, weight.double()[:, None] * adv.double())
    first = torch.full((len(uniq),), len(inv), dtype=torch.long, device=dev)
    first.scatter_reduce_(0, inv, torch.arange(len(inv), device=dev), "amin")
    at, new = self._merge(uniq, mask[first], player[first], epoch)
    at, new = at.to(dev), new.to(dev)
    x = self.info.to(dev)
    legal = self.mask.to(dev)
    if self.scale > 0:  # C_t read back from W; states never sampled before start at 0
      with torch.no_grad():
        raw = regret_net(x).double() * self.scale * (legal & ~new[:, None])
    else:
      raw = torch.zeros(len(x), legal.shape[1], dtype=torch.float64, device=dev)
    if discount is not None:
      mine = torch.ones(len(x), dtype=torch.bool, device=dev) if learner_player is None else (
          self.player.to(dev) == learner_player)
      factor = torch.where(raw > 0, discount[0], discount[1])
      raw = torch.where(mine[:, None], raw * factor, raw)
    kept = at >= 0  # an epoch with more distinct states than the memory loses the oldest
    raw.index_add_(0, at[kept], weight_t * s[kept] * legal[at[kept]])
    if plus:
      raw = raw.clamp_min(0.0)
    ms = (raw.pow(2).sum(1) / legal.sum(1).clamp_min(1)).float()
    self.scale = float(ms.double().mean().sqrt()) if float(ms.sum()) > 0 else 0.0
    y = (raw / max(self.scale, 1e-300)).float()
    ms = ms / max(self.scale ** 2, 1e-300)
    return x, y, legal, 1.0 / (ms + REL_FLOOR)

  def _merge(self, info, mask, player, epoch) -> tuple[torch.Tensor, torch.Tensor]:
    """Adds distinct encodings (R', D) with their masks and players, sampled at `epoch`;
    keeps the `capacity` most recently sampled. Returns each one's row in the memory (-1:
    not kept) and which memory rows were not in it before."""
    n_old = len(self.seen)
    info_all = info.cpu() if n_old == 0 else torch.cat([self.info, info.cpu()])
    uniq, inv = torch.unique(info_all, dim=0, return_inverse=True)
    seen = torch.full((len(uniq),), -1, dtype=torch.long)
    seen.scatter_reduce_(0, inv, torch.cat([self.seen, torch.full((len(info),), epoch)]),
                         "amax")
    first = torch.full((len(uniq),), len(inv), dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(len(inv)), "amin")
    self.info, self.seen = uniq, seen
    mask_all = mask.cpu() if n_old == 0 else torch.cat([self.mask, mask.cpu()])
    self.mask = mask_all[first]
    self.player = torch.cat([self.player, player.cpu()])[first]
    new = first >= n_old
    row = torch.arange(len(uniq))
    if len(uniq) > self.capacity:
      keep = torch.argsort(seen, descending=True, stable=True)[:self.capacity].sort().values
      row = torch.full((len(uniq),), -1, dtype=torch.long)
      row[keep] = torch.arange(len(keep))
      self.info, self.mask = self.info[keep], self.mask[keep]
      self.player, self.seen = self.player[keep], self.seen[keep]
      new = new[keep]
    return row[inv[n_old:]], new

  def state_dict(self) -> dict:
    return {"info": self.info, "mask": self.mask, "player": self.player, "seen": self.seen,
            "scale": self.scale}

  def load_state_dict(self, d: dict) -> None:
    self.info, self.mask, self.player = d["info"], d["mask"], d["player"]
    self.seen, self.scale = d["seen"], float(d["scale"])
