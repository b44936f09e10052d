"""CFR+ (Tammelin, arXiv 1407.5042), `pyspiel.CFRPlusSolver`, as a Learner.

Regrets are clipped at zero, R^+_t(I, a) = max(0, R^+_{t-1}(I, a) + r_t(I, a)), with
alternating updates and a linearly weighted average policy. One step = one iteration = one
full tree traversal.
"""

from __future__ import annotations

import dataclasses

import pyspiel
import torch

from armac_spiel import evaluation
from armac_spiel.baselines.base import Baseline, BaselineParams


@dataclasses.dataclass(frozen=True)
class CFRPlusParams(BaselineParams):
  """CFR+ has no hyper-parameters."""


class CFRPlus(Baseline):
  """pyspiel.CFRPlusSolver; deterministic, so a checkpoint is its iteration count and
  loading replays that many iterations (pickling the C++ solver does not round-trip)."""

  name = "cfr_plus"
  episode_unit = "full tree traversals (= iterations)"
  params_cls = CFRPlusParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    self._solver = pyspiel.CFRPlusSolver(self.sgame.game)

  def _step(self) -> dict:
    self._solver.evaluate_and_update_policy()
    self.iterations += 1
    self.episodes += 1
    return {}

  def average_table(self) -> torch.Tensor:
    # average_policy() points into the solver, which self keeps alive.
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def state_dict(self) -> dict:
    return self._counters()

  def load_state_dict(self, state: dict) -> None:
    self._solver = pyspiel.CFRPlusSolver(self.sgame.game)
    for _ in range(int(state["iterations"])):
      self._solver.evaluate_and_update_policy()
    self._load_counters(state)
