"""What the scheduler reports at an evaluation, and what it costs.

`SchedulerMetrics.report(learner)`: exploitability_mixed (the deployed pi_mix),
exploitability_mixed_net (the network's lambda everywhere), exploitability_mixed_current (the
manager's current sigma, the oscillating iterate), exploitability_mixed_average (its
average), exploitability_best_global_lambda and best_global_lambda (the best single lambda on
a 21-point grid, a control), scheduler.interior_reach (share of own reach, under the deployed
pi_mix, on states whose deployed lambda lies in (0.1, 0.9)), the manager's statistics, the
update's and the deployment's measures, the cost (`Cost`) and the update cadence
(scheduler.update_every in force, scheduler.update_fraction of the epochs' seconds). Its 25
policies (the four mixes and the grid's 21) are evaluated in one batched call
(armac_spiel.evaluation.exact_values).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from armac_spiel import evaluation
from armac_spiel.scheduler.cadence import UpdateCadence
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler.deployment import Deployment
from armac_spiel.scheduler.lambdas import LambdaSource
from armac_spiel.scheduler.mixer import mixing_stats

GLOBAL_GRID = 21                # lambdas 0, 0.05, ..., 1 for the best-global-lambda control
INTERIOR = (0.1, 0.9)


@dataclasses.dataclass
class Cost:
  """Wall-clock seconds in the scheduler's behaviour and training hooks, the epochs'
  seconds outside its updates (as ARMAC measures them), and epochs seen."""
  behaviour_s: float = 0.0
  train_s: float = 0.0
  epochs: int = 0
  epoch_s: float = 0.0

  def ms_per_epoch(self) -> float:
    """Milliseconds of behaviour and training per epoch (0 before the first epoch)."""
    n = self.epochs
    return 1e3 * (self.behaviour_s + self.train_s) / n if n else 0.0

  def update_fraction(self) -> float:
    """Share of the epochs' seconds spent in the scheduler's updates (0 before any)."""
    total = self.epoch_s + self.train_s
    return self.train_s / total if total > 0 else 0.0

  def to_dict(self) -> dict:
    return {"behaviour_s": self.behaviour_s, "train_s": self.train_s, "epochs": self.epochs,
            "epoch_s": self.epoch_s}

  def load(self, d: dict) -> None:
    self.behaviour_s, self.train_s, self.epochs = d["behaviour_s"], d["train_s"], d["epochs"]
    self.epoch_s = d.get("epoch_s", 0.0)


def interior_reach(own_reach: torch.Tensor | None, lam: torch.Tensor) -> float:
  """Share of the players' own reach (S,) (under the deployed pi_mix) on states with lambda
  in (0.1, 0.9); NaN for a game beyond the compiled tree (`own_reach` None)."""
  if own_reach is None:
    return float("nan")
  lo, hi = INTERIOR
  inside = ((lam[:, 0] > lo) & (lam[:, 0] < hi)).double()
  total = float(own_reach.sum())
  return float((own_reach * inside).sum()) / total if total > 0 else 0.0


def best_global_lambda(nash_convs) -> tuple[float, float]:
  """(lambda, NashConv) of the first lambda of the GLOBAL_GRID grid (0, 0.05, ..., 1) with
  the least NashConv, from the grid's NashConvs in grid order."""
  best = (float("nan"), float("inf"))
  for lam, nc in zip(np.linspace(0.0, 1.0, GLOBAL_GRID), nash_convs):
    if nc < best[1]:
      best = (float(lam), nc)
  return best


class SchedulerMetrics:
  """The evaluation's scheduler entries (see the module docstring); `notes`: the update's
  and the deployment's measures by name, reported as scheduler.<name>."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource,
               deployment: Deployment, cost: Cost, cadence: UpdateCadence, notes: dict,
               strategy: str):
    self.suite = suite
    self.lambdas = lambdas
    self.deployment = deployment
    self.cost = cost
    self.cadence = cadence
    self.notes = notes
    self.strategy = strategy

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
    n = len(lambdas.table)
    lams = [lam, dep.deployed_lambda(learner, net_only=True), lambdas.current_lambda(learner),
            lambdas.average_lambda(learner)]
    lams += [torch.full((n, 1), float(x), dtype=torch.float64)
             for x in np.linspace(0.0, 1.0, GLOBAL_GRID)]
    ev = evaluation.exact_values(game, [lambdas.mix(x, parts) for x in lams])
    (expl, expl_net, expl_cur, expl_avg), (nc, nc_net, nc_cur, nc_avg) = (
        ev.exploitability[:4], ev.nash_conv[:4])
    out.update({f"scheduler.{k}": v for k, v in mixing_stats(lam, bins).items()})
    out["scheduler.interior_reach"] = interior_reach(
        None if ev.own_reach is None else ev.own_reach[0], lam)
    out["scheduler.mode"] = lambdas.mode
    out["scheduler.strategy"] = self.strategy
    out["scheduler.cost_ms_per_epoch"] = self.cost.ms_per_epoch()
    out["scheduler.epochs_since_update"] = self.cadence.since_update(learner.epoch)
    out["scheduler.update_every"] = self.cadence.every
    out["scheduler.update_fraction"] = self.cost.update_fraction()
    out["scheduler.behaviour_s"] = self.cost.behaviour_s
    out["scheduler.train_s"] = self.cost.train_s
    out["scheduler.deploy_refresh_s"] = dep.refresh_s or 0.0
    out["nash_conv_mixed"] = nc
    out["nash_conv_mixed_net"] = nc_net
    out["nash_conv_mixed_current"] = nc_cur
    out["nash_conv_mixed_average"] = nc_avg
    g_lam, g_nc = best_global_lambda(ev.nash_conv[4:])
    out["best_global_lambda"] = g_lam
    out["nash_conv_best_global_lambda"] = g_nc
    if expl is not None:
      out["exploitability_mixed"] = expl
      out["exploitability_mixed_net"] = expl_net
      out["exploitability_mixed_current"] = expl_cur
      out["exploitability_mixed_average"] = expl_avg
      out["exploitability_best_global_lambda"] = g_nc / 2.0
    return out
