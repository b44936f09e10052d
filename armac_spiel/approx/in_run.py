"""The run loop's evaluation, exact or approximate (RunSpec.evaluation).

`evaluate_learner(learner, method, seed, train_s, approx_s)`:
- exact: armac_spiel.evaluation.evaluate_learner (average and current policy, extras);
- learned_br / lbr: a lower bound on the average policy's exploitability by sampled play,
  with its 95% half-width. The policy is the learner's solver policy (MCCFR), its
  `average_policy()` when that is a batched network policy (ARMAC), else its
  `average_table()`: only the last needs the game enumerated. A learner's
  `evaluation_extras()` (exact quantities, e.g. the scheduler's) are added only for a game
  small enough to tabulate. The time allowance keeps the run's approximate evaluations
  within APPROX_SHARE of its wall time: this evaluation may spend TARGET_SHARE /
  (1 - TARGET_SHARE) times the training seconds so far, less what earlier evaluations
  spent (at least MIN_S), TARGET_SHARE a margin below APPROX_SHARE. Its HistoryCache is
  kept for the next evaluation.
Every line says which method gave it (`exploitability_method`) and its `exploitability_ci95`
(0 for exact values); approximate lines add `approx_s` (this evaluation's seconds) and
`approx_episodes`.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from armac_spiel import evaluation
from armac_spiel.approx.budget import Budget
from armac_spiel.approx.estimate import estimate, resolve_method
from armac_spiel.approx.frozen import BatchedPolicy, frozen_policy
from armac_spiel.approx.histories import HistoryCache
from games import tree

APPROX_SHARE = 0.2   # approximate evaluation's share of a run's wall time, at most
# The allowance aims below it: an estimate ends the chunk it is in when its time is up, and
# the policy's extraction costs a little besides (runs at 0.2 measured 20.3-20.7%).
TARGET_SHARE = 0.18
MIN_S = 1.0          # seconds of an approximate evaluation, at least
ENUMERABLE_NODES = 4_000_000  # games up to this many histories get policy.json


def allowance(train_s: float, approx_s: float) -> float:
  """Seconds the next approximate evaluation may spend."""
  return max(MIN_S, TARGET_SHARE / (1.0 - TARGET_SHARE) * train_s - approx_s)


@runtime_checkable
class HasSolverPolicy(Protocol):
  """A learner whose solver's own average policy is queried per state (MCCFR)."""

  def solver_policy(self):
    ...


def learner_policy(learner):
  """The learner's average policy in the form that needs the least of the game: the
  solver's policy, a batched network policy, else the table."""
  if isinstance(learner, HasSolverPolicy):
    return learner.solver_policy()
  average = getattr(learner, "average_policy", None)
  if average is not None:
    pol = average()
    if isinstance(pol, BatchedPolicy):
      return pol
  return learner.average_table()


_CACHES: dict = {}  # (game string, what the policy reads) -> HistoryCache, kept across evaluations


def _cache(game_string: str, policy) -> HistoryCache:
  """A HistoryCache of the game kept from the previous evaluation (its histories are
  reused), or a new one."""
  pol = frozen_policy(game_string, policy)
  key = (game_string, pol.reads)
  if key not in _CACHES:
    if len(_CACHES) >= 2:
      _CACHES.clear()
    _CACHES[key] = HistoryCache(game_string, [pol, pol])
  return _CACHES[key]


def evaluate_learner(learner, method: str, seed: int, train_s: float,
                     approx_s: float) -> dict:
  """One metrics line's evaluation fields (see the module docstring)."""
  method = resolve_method(method, learner.game_string)
  if method == "exact":
    return {**evaluation.evaluate_learner(learner), "exploitability_method": "exact",
            "exploitability_ci95": 0.0}
  t0 = time.perf_counter()
  policy = learner_policy(learner)
  est = estimate(learner.game_string, policy, method,
                 Budget.of_seconds(allowance(train_s, approx_s) - (time.perf_counter() - t0)),
                 seed, cache=_cache(learner.game_string, policy))
  out = {"exploitability": est.exploitability, "nash_conv": 2.0 * est.exploitability,
         "exploitability_method": method, "exploitability_ci95": est.ci95,
         "approx_s": time.perf_counter() - t0,
         "approx_episodes": est.train_episodes + 2 * est.eval_episodes}
  extras = getattr(learner, "evaluation_extras", None)
  if extras is not None and enumerable(learner.game_string):
    out.update(extras())  # exact extras (the scheduler's) need the game tabulated
  return out


def enumerable(game_string: str) -> bool:
  """Whether the game is small enough to write its policy as a table (policy.json)."""
  return tree.tree_fits(game_string, ENUMERABLE_NODES)
