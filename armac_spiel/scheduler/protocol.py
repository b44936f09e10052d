"""The interface ARMAC holds its scheduler by (`ARMAC(..., scheduler=...)`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SchedulerHooks(Protocol):
  """The calls ARMAC makes on its scheduler (armac_spiel.scheduler.Scheduler is one)."""

  drives_behaviour: bool  # whether `behaviour` gives the learning player's sampling policy

  def behaviour(self, learner, batch) -> dict:
    """At one sampling step (games.StepBatch): {"mixed": (R, A) pi_mix, "actor": (R, A),
    "regret": (R, A), "lambda": (R, 1)} and, discrete, "logits" and "lambda_idx"."""
    ...

  def train_step(self, learner, traj, learner_ids: torch.Tensor,
                 epoch_s: float | None = None) -> dict:
    """After the epoch's fits (`epoch_s`: the epoch's seconds so far): one scheduler update
    where its cadence says; returns its statistics."""
    ...

  def metrics(self, learner) -> dict:
    """The evaluation's scheduler entries."""
    ...

  def export(self, out_dir: str, learner) -> str:
    """Writes the scheduler's files into out_dir; returns the mixed policy's path."""
    ...

  def state_dict(self) -> dict:
    ...

  def load_state_dict(self, d: dict) -> None:
    ...
