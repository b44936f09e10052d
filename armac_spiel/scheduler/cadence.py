"""When the scheduler updates: scheduler.update_every.

- An integer N: at the epochs whose count (learner.epoch + 1) is a multiple of N, so that
  evaluations every multiple of N epochs see a fresh update. What a run computes is then
  fixed by its seed.
- `auto` (the default): the smallest spacing that keeps the updates' share of the epochs'
  seconds at most f = scheduler.update_fraction, measured online. The first update comes at
  the first epoch; after each update the spacing becomes N = ceil(u (1 - f) / (f e)), u the
  update's seconds and e an exponential average (EPOCH_DECAY, bias-corrected) of the epochs'
  seconds outside the update, and the next update comes N epochs after this one. Which
  epochs update then follows the machine's clocks: a run that must be reproduced bit for bit
  sets an integer.
"""

from __future__ import annotations

import math

from armac_spiel.scheduler.config import AUTO, SchedulerConfig

EPOCH_DECAY = 0.9


class UpdateCadence:
  """Which epochs update (module docstring); `observe` every epoch, `updated` after an
  update."""

  def __init__(self, cfg: SchedulerConfig):
    self.auto = cfg.update_every == AUTO
    self.fraction = cfg.update_fraction
    self.every = 1 if self.auto else int(cfg.update_every)  # the spacing in force
    self.last = 0           # count (epoch + 1) of the last update's epoch, 0: none yet
    self.update_s = 0.0     # the last update's seconds
    self._epoch_sum = 0.0   # exponential average of the epochs' seconds: sum and weight
    self._epoch_weight = 0.0

  def due(self, epoch: int) -> bool:
    """Whether the epoch `epoch` (0-based) updates."""
    count = epoch + 1
    if not self.auto:
      return count % self.every == 0
    return self.last == 0 or count - self.last >= self.every

  def since_update(self, epochs: int) -> int:
    """Epochs since the last update after `epochs` epochs."""
    return epochs % self.every if not self.auto else epochs - self.last

  def observe(self, epoch_s: float | None) -> None:
    """One epoch's seconds outside the scheduler's update (None: not measured)."""
    if epoch_s is not None:
      self._epoch_sum = EPOCH_DECAY * self._epoch_sum + (1 - EPOCH_DECAY) * epoch_s
      self._epoch_weight = EPOCH_DECAY * self._epoch_weight + (1 - EPOCH_DECAY)

  @property
  def epoch_s(self) -> float:
    """The averaged seconds of an epoch outside the update (0 before any)."""
    return self._epoch_sum / self._epoch_weight if self._epoch_weight > 0 else 0.0

  def updated(self, epoch: int, update_s: float) -> None:
    """After the update of epoch `epoch` that took `update_s` seconds."""
    self.last = epoch + 1
    self.update_s = update_s
    if self.auto:
      e, f = self.epoch_s, self.fraction
      self.every = max(1, math.ceil(update_s * (1 - f) / (f * e))) if e > 0 else 1

  def state_dict(self) -> dict:
    return {"every": self.every, "last": self.last, "update_s": self.update_s,
            "epoch_sum": self._epoch_sum, "epoch_weight": self._epoch_weight}

  def load_state_dict(self, d: dict | None) -> None:
    """A checkpoint's cadence (None, from a version without it: the fixed spacing stands,
    auto starts measuring again)."""
    if not d:
      return
    if self.auto:
      self.every = int(d["every"])
    self.last, self.update_s = int(d["last"]), float(d["update_s"])
    self._epoch_sum, self._epoch_weight = float(d["epoch_sum"]), float(d["epoch_weight"])
