"""What the scheduler reports at an evaluation, and what it costs.

`SchedulerMetrics.report(learner)`: exploitability_mixed (the deployed pi_mix),
exploitability_mixed_net (the network's lambda everywhere), exploitability_mixed_current (the
manager's current sigma, the oscillating iterate), exploitability_mixed_average (its
average), exploitability_best_global_lambda and best_global_lambda (the best single lambda on
a 21-point grid, a control), scheduler.interior_reach (share of own reach, under the deployed
pi_mix, on states whose deployed lambda lies in (0.1, 0.9)), the manager's statistics, the
update's and the deployment's measures, and the cost (`Cost`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from armac_spiel import evaluation
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler.deployment import Deployment
from armac_spiel.scheduler.lambdas import LambdaSource
from armac_spiel.scheduler.mixer import mixing_stats
from games.tree import compile_tree, tree_fits

GLOBAL_GRID = 21                # lambdas 0, 0.05, ..., 1 for the best-global-lambda control
INTERIOR = (0.1, 0.9)


@dataclasses.dataclass
class Cost:
  """Wall-clock seconds in the scheduler's behaviour and training hooks, and epochs seen."""
  behaviour_s: float = 0.0
  train_s: float = 0.0
  epochs: int = 0

  def ms_per_epoch(self) -> float:
    """Milliseconds of behaviour and training per epoch (0 before the first epoch)."""
    n = self.epochs
    return 1e3 * (self.behaviour_s + self.train_s) / n if n else 0.0

  def to_dict(self) -> dict:
    return {"behaviour_s": self.behaviour_s, "train_s": self.train_s, "epochs": self.epochs}

  def load(self, d: dict) -> None:
    self.behaviour_s, self.train_s, self.epochs = d["behaviour_s"], d["train_s"], d["epochs"]


def interior_reach(game_string: str, mixed: torch.Tensor, lam: torch.Tensor) -> float:
  """Share of the players' own reach (under `mixed`) on states with lambda in (0.1, 0.9);
  NaN for a game beyond the compiled tree."""
  if not tree_fits(game_string):
    return float("nan")
  reach = compile_tree(game_string).best_response_cfv(mixed).own_reach
  lo, hi = INTERIOR
  inside = ((lam[:, 0] > lo) & (lam[:, 0] < hi)).double()
  total = float(reach.sum())
  return float((reach * inside).sum()) / total if total > 0 else 0.0


class SchedulerMetrics:
  """The evaluation's scheduler entries (see the module docstring); `notes`: the update's
  and the deployment's measures by name, reported as scheduler.<name>."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource,
               deployment: Deployment, cost: Cost, notes: dict, strategy: str):
    self.suite = suite
    self.lambdas = lambdas
    self.deployment = deployment
    self.cost = cost
    self.notes = notes
    self.strategy = strategy

  def best_global_lambda(self, learner, parts=None) -> tuple[float, float]:
    """(lambda, NashConv) of the best single lambda on a 21-point grid."""
    best = (float("nan"), float("inf"))
    n = len(self.lambdas.table)
    parts = parts if parts is not None else self.lambdas.parts(learner)
    for lam in np.linspace(0.0, 1.0, GLOBAL_GRID):
      mixed = self.lambdas.mix(torch.full((n, 1), float(lam), dtype=torch.float64), parts)
      nc = evaluation.fast_exploitability(self.lambdas.game_string, mixed)[1]
      if nc < best[1]:
        best = (float(lam), nc)
    return best

  def report(self, learner) -> dict:
    """Exploitability of the deployed mix, the controls, interior reach, manager, cost."""
    lambdas, dep, game = self.lambdas, self.deployment, self.lambdas.game_string
    bins = lambdas.bins
    out = {k: v for k, v in lambdas.trainer.stats().items()
           if k.startswith("scheduler.") and not k.startswith("scheduler.lambda_")}
    out.update({f"scheduler.{k}": v for k, v in self.notes.items()})
    if out["scheduler.states_tracked"] == 0:  # untracked keys get the uniform distribution
      out["scheduler.bin_entropy"] = float(np.log(len(bins)))
    parts = lambdas.parts(learner)
    lam = dep.deployed_lambda(learner)
    mixed = lambdas.mix(lam, parts)
    expl, nc = evaluation.fast_exploitability(game, mixed)
    net_mixed = lambdas.mix(dep.deployed_lambda(learner, net_only=True), parts)
    expl_net, nc_net = evaluation.fast_exploitability(game, net_mixed)
    cur_mixed = lambdas.mix(lambdas.current_lambda(learner), parts)
    expl_cur, nc_cur = evaluation.fast_exploitability(game, cur_mixed)
    avg_mixed = lambdas.mix(lambdas.average_lambda(learner), parts)
    expl_avg, nc_avg = evaluation.fast_exploitability(game, avg_mixed)
    out.update({f"scheduler.{k}": v for k, v in mixing_stats(lam, bins).items()})
    out["scheduler.interior_reach"] = interior_reach(game, mixed, lam)
    out["scheduler.mode"] = lambdas.mode
    out["scheduler.strategy"] = self.strategy
    out["scheduler.cost_ms_per_epoch"] = self.cost.ms_per_epoch()
    out["scheduler.epochs_since_update"] = learner.epoch % self.suite.scheduler.update_every
    out["scheduler.behaviour_s"] = self.cost.behaviour_s
    out["scheduler.train_s"] = self.cost.train_s
    out["scheduler.deploy_refresh_s"] = dep.refresh_s or 0.0
    out["nash_conv_mixed"] = nc
    out["nash_conv_mixed_net"] = nc_net
    out["nash_conv_mixed_current"] = nc_cur
    out["nash_conv_mixed_average"] = nc_avg
    g_lam, g_nc = self.best_global_lambda(learner, parts)
    out["best_global_lambda"] = g_lam
    out["nash_conv_best_global_lambda"] = g_nc
    if expl is not None:
      out["exploitability_mixed"] = expl
      out["exploitability_mixed_net"] = expl_net
      out["exploitability_mixed_current"] = expl_cur
      out["exploitability_mixed_average"] = expl_avg
      out["exploitability_best_global_lambda"] = g_nc / 2.0
    return out
