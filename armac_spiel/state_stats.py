"""Per-information-state sufficient statistics of weighted means, replacing a replay.

A fit that regresses on each information state's weighted mean target needs only, per
state s, the sums N(s, a) = sum_r w_r y_r(a) and D(s) = sum_r w_r over the rows r at s: the
minimiser of the row-wise weighted squared (or cross-entropy) loss at s is N(s) / D(s).
Memory is O(S * A) whatever the number of rows, where a replay grows with them (and once a
reservoir thins, its means are only estimates of these).

When a row's weight has a factor c_j that still changes after the row is added (ARMAC's
regret rows carry c_j = CFR weight of policy j / times j was drawn), the sums are kept per
source epoch j, N_j and D_j, while j can still be drawn ("live"), and the mean is
(N + sum_j c_j N_j) / (D + sum_j c_j D_j); once j can no longer be drawn its c_j is final
and `fold` adds c_j N_j, c_j D_j into N, D. Live epochs are bounded by the policy buffer.
"""

from __future__ import annotations

import torch


class StateSums:
  """Weighted sums of (S, A) row vectors per information state: folded (final weights) and
  per live source epoch (weights still to be multiplied by a per-epoch factor)."""

  def __init__(self, num_states: int, num_actions: int):
    self.num_states, self.num_actions = num_states, num_actions
    self.num = torch.zeros(num_states, num_actions, dtype=torch.float64)
    self.den = torch.zeros(num_states, dtype=torch.float64)
    self.live_epochs = torch.zeros(0, dtype=torch.long)
    self.live_num = torch.zeros(0, num_states, num_actions, dtype=torch.float64)
    self.live_den = torch.zeros(0, num_states, dtype=torch.float64)
    self.rows = 0  # rows added so far

  def __len__(self) -> int:
    return self.rows

  def add(self, sid: torch.Tensor, values: torch.Tensor, weight: torch.Tensor,
          epoch: torch.Tensor | None = None) -> None:
    """Adds rows (state ids (R,), values (R, A), weights (R,)); with `epoch` (R,) their
    source epochs, whose sums stay separate until `fold`; without, the weights are final."""
    if len(sid) == 0:
      return
    w = weight.double()
    v = values.double() * w[:, None]
    self.rows += len(sid)
    if epoch is None:
      self.num.index_add_(0, sid, v)
      self.den.index_add_(0, sid, w)
      return
    new = torch.unique(epoch)
    new = new[~torch.isin(new, self.live_epochs)]
    if len(new):
      s, a = self.num_states, self.num_actions
      self.live_epochs = torch.cat([self.live_epochs, new])
      self.live_num = torch.cat([self.live_num, torch.zeros(len(new), s, a,
                                                            dtype=torch.float64)])
      self.live_den = torch.cat([self.live_den, torch.zeros(len(new), s, dtype=torch.float64)])
    lut = torch.full((int(self.live_epochs.max()) + 1,), -1, dtype=torch.long)
    lut[self.live_epochs] = torch.arange(len(self.live_epochs))
    flat = lut[epoch] * self.num_states + sid
    self.live_num.view(-1, self.num_actions).index_add_(0, flat, v)
    self.live_den.view(-1).index_add_(0, flat, w)

  def fold(self, keep: torch.Tensor, factor: torch.Tensor) -> None:
    """Folds the live epochs not in `keep` into the final sums, scaled by their `factor`
    (one per live epoch, in live_epochs order)."""
    drop = ~torch.isin(self.live_epochs, keep)
    if not drop.any():
      return
    f = factor.double()[drop]
    self.num += torch.einsum("l,lsa->sa", f, self.live_num[drop])
    self.den += f @ self.live_den[drop]
    self.live_epochs = self.live_epochs[~drop]
    self.live_num, self.live_den = self.live_num[~drop], self.live_den[~drop]

  def means(self, factor: torch.Tensor | None = None):
    """(state ids with weight (S',), weighted means (S', A) float64), the live epochs'
    sums scaled by `factor` (one per live epoch; needed when any are live)."""
    num, den = self.num, self.den
    if len(self.live_epochs):
      f = factor.double()
      num = num + torch.einsum("l,lsa->sa", f, self.live_num)
      den = den + f @ self.live_den
    seen = (den > 0).nonzero().squeeze(1)
    return seen, num[seen] / den[seen, None]

  def state_dict(self) -> dict:
    return {"num": self.num, "den": self.den, "live_epochs": self.live_epochs,
            "live_num": self.live_num, "live_den": self.live_den, "rows": self.rows}

  def load_state_dict(self, d: dict) -> None:
    if tuple(d["num"].shape) != (self.num_states, self.num_actions):
      raise ValueError(f"state sums have shape {tuple(d['num'].shape)}, this game needs "
                       f"{(self.num_states, self.num_actions)}")
    self.num, self.den, self.rows = d["num"], d["den"], d["rows"]
    self.live_epochs, self.live_num, self.live_den = (d["live_epochs"], d["live_num"],
                                                      d["live_den"])
