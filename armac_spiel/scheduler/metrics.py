"""What the scheduler reports at an evaluation, and what it costs.

`SchedulerMetrics.report(learner)`: exploitability_mixed (the deployed pi_mix),
exploitability_mixed_net (the network's lambda everywhere), exploitability_mixed_current (the
manager's current sigma, the oscillating iterate), exploitability_mixed_average (its
average), exploitability_best_global_lambda and best_global_lambda (the best single lambda
on a grid of sixteenths, by a coarse-to-fine search: a control), scheduler.interior_reach
(share of own reach, under the deployed pi_mix, on states whose deployed lambda lies in
(0.1, 0.9)), the manager's statistics, the update's and the deployment's measures, the cost
(`Cost`) and the update cadence (scheduler.update_every in force, scheduler.update_fraction
of the epochs' seconds). The four mixes are evaluated in one batched call
(armac_spiel.evaluation.exact_values, which measures no table twice: the deployment's
candidates, measured on the same parts, are the deployed mix and the manager's two), and
the control's search in three more, from the scheduler's first update on (before it every
lambda is the network's, so a run's first evaluation measures one mix).

The control is a diagnostic, and on a large tree its 9 policies cost about as much as the
rest of the evaluation (16.5 s on a 10^7-node tree). It is measured when its estimated
seconds (the last control's; before the first, 9 times the seconds per table that the four
mixes' call evaluated) are at most CONTROL_FREE_S, or fit the seconds left to the
evaluation's deadline (armac_spiel.evaluation.deadline: the run's evaluation budget), or,
without a deadline (a fixed cadence), keep the controls' seconds within CONTROL_FRACTION of
the epochs' seconds (`Cost`); otherwise the line lacks its fields and
scheduler.control_skipped counts the evaluations without it. scheduler.control_s reports
the controls' seconds so far.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np
import torch

from armac_spiel import evaluation
from armac_spiel.scheduler.cadence import UpdateCadence
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler.deployment import Deployment
from armac_spiel.scheduler.lambdas import LambdaSource
from armac_spiel.scheduler.mixer import mixing_stats

# The best-global-lambda control's search (best_global_lambda): steps 1/4, 1/8, 1/16.
GLOBAL_GRID = (4, 8, 16)
CONTROL_POLICIES = 9  # the search's policies: 5 on quarters, then 2 at each finer step
CONTROL_FREE_S = 0.5  # a control estimated at most this is always measured
CONTROL_FRACTION = 0.03  # no deadline: the controls' seconds within this share of the epochs'
INTERIOR = (0.1, 0.9)


@dataclasses.dataclass
class Cost:
  """Wall-clock seconds in the scheduler's behaviour and training hooks, the epochs'
  seconds outside its updates (as ARMAC measures them), epochs seen, and the
  best-global-lambda control's seconds (all, the last one's) and evaluations without it."""
  behaviour_s: float = 0.0
  train_s: float = 0.0
  epochs: int = 0
  epoch_s: float = 0.0
  control_s: float = 0.0
  control_s_last: float = 0.0
  control_skipped: int = 0

  def ms_per_epoch(self) -> float:
    """Milliseconds of behaviour and training per epoch (0 before the first epoch)."""
    n = self.epochs
    return 1e3 * (self.behaviour_s + self.train_s) / n if n else 0.0

  def update_fraction(self) -> float:
    """Share of the epochs' seconds spent in the scheduler's updates (0 before any)."""
    total = self.epoch_s + self.train_s
    return self.train_s / total if total > 0 else 0.0

  def control_fits(self, estimate_s: float, seconds_left: float | None = None) -> bool:
    """Whether a control estimated at `estimate_s` seconds is measured, with `seconds_left`
    to the evaluation's deadline (None: none) (module docstring)."""
    if estimate_s <= CONTROL_FREE_S:
      return True
    if seconds_left is not None:
      return estimate_s <= seconds_left
    return self.control_s + estimate_s <= CONTROL_FRACTION * (self.epoch_s + self.train_s)

  def to_dict(self) -> dict:
    return {"behaviour_s": self.behaviour_s, "train_s": self.train_s, "epochs": self.epochs,
            "epoch_s": self.epoch_s, "control_s": self.control_s,
            "control_s_last": self.control_s_last, "control_skipped": self.control_skipped}

  def load(self, d: dict) -> None:
    self.behaviour_s, self.train_s, self.epochs = d["behaviour_s"], d["train_s"], d["epochs"]
    self.epoch_s = d.get("epoch_s", 0.0)
    self.control_s = d.get("control_s", 0.0)
    self.control_s_last = d.get("control_s_last", 0.0)
    self.control_skipped = d.get("control_skipped", 0)


def interior_reach(own_reach: torch.Tensor | None, lam: torch.Tensor) -> float:
  """Share of the players' own reach (S,) (under the deployed pi_mix) on states with lambda
  in (0.1, 0.9); NaN for a game beyond the compiled tree (`own_reach` None)."""
  if own_reach is None:
    return float("nan")
  lo, hi = INTERIOR
  inside = ((lam[:, 0] > lo) & (lam[:, 0] < hi)).double()
  total = float(own_reach.sum())
  return float((own_reach * inside).sum()) / total if total > 0 else 0.0


def best_global_lambda(nash_convs_of: Callable[[list], Sequence[float]]
                       ) -> tuple[float, float]:
  """(lambda, NashConv) of the least exploitable single lambda (the smallest on ties) that a
  coarse-to-fine search finds on the grid k / GLOBAL_GRID[-1]: lambdas 0, 1/4, ..., 1, then
  the best one's neighbours at each finer step. `nash_convs_of(lambdas)` gives the NashConvs
  of pi_mix under each lambda of a list, one batched call per step (9 lambdas of 17 in 3
  calls). Lambdas 0 and 1 (the actor alone, RM(W) alone) are among them, so the control is
  never worse than either part."""
  seen: dict[float, float] = {}

  def visit(lams) -> None:
    new = [x for x in lams if 0.0 <= x <= 1.0 and x not in seen]
    if new:
      seen.update(zip(new, (float(nc) for nc in nash_convs_of(new))))

  def best() -> float:
    return min(seen, key=lambda x: (seen[x], x))

  first, *finer = GLOBAL_GRID
  visit([k / first for k in range(first + 1)])
  for n in finer:
    b = best()
    visit([b - 1.0 / n, b + 1.0 / n])
  b = best()
  return b, seen[b]


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
    lams = [lam, dep.deployed_lambda(learner, net_only=True), lambdas.current_lambda(learner),
            lambdas.average_lambda(learner)]
    t0 = time.perf_counter()
    ev = evaluation.exact_values(game, [lambdas.mix(x, parts) for x in lams])
    mixes_s = time.perf_counter() - t0
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
    if expl is not None:
      out["exploitability_mixed"] = expl
      out["exploitability_mixed_net"] = expl_net
      out["exploitability_mixed_current"] = expl_cur
      out["exploitability_mixed_average"] = expl_avg
    if self.cadence.last:  # the control, once the scheduler has updated (module docstring)
      self._control(out, parts, mixes_s / max(1, ev.evaluated), expl is not None)
    out["scheduler.control_s"] = self.cost.control_s
    out["scheduler.control_skipped"] = self.cost.control_skipped
    return out

  def _control(self, out: dict, parts, table_s: float, zero_sum_expl: bool) -> None:
    """The best-global-lambda control into `out`, when its budget allows (module
    docstring); `table_s`: seconds per table of the mixes' call."""
    cost, lambdas = self.cost, self.lambdas
    estimate = cost.control_s_last or table_s * CONTROL_POLICIES
    if not cost.control_fits(estimate, evaluation.seconds_left()):
      cost.control_skipped += 1
      return
    n = len(lambdas.table)
    t0 = time.perf_counter()
    g_lam, g_nc = best_global_lambda(lambda xs: evaluation.exact_values(
        lambdas.game_string, [lambdas.mix(torch.full((n, 1), x, dtype=torch.float64), parts)
                              for x in xs]).nash_conv)
    cost.control_s_last = time.perf_counter() - t0
    cost.control_s += cost.control_s_last
    out["best_global_lambda"] = g_lam
    out["nash_conv_best_global_lambda"] = g_nc
    if zero_sum_expl:
      out["exploitability_best_global_lambda"] = g_nc / 2.0
