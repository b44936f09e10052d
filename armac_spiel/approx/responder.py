"""A fixed responder per seat, and its value by sampled play against the frozen policy.

A responder is a deterministic choice per information state of its seat (its `Registry`
ids); at an information state it has no choice for (first reached during the evaluation)
it plays uniformly. Either way it is one fixed strategy, so its mean return against the
frozen policy is at most the best response's value: the estimate is a lower bound up to
sampling error.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

import numpy as np

from armac_spiel.approx.budget import Budget, half_width
from armac_spiel.approx.control import HistoryBaseline
from armac_spiel.approx.histories import HistoryCache

EVAL_CHUNK = 65536
FIRST_CHUNK = 4096
SMALL_CHUNK = 64      # first chunk under a seconds budget
MIN_RECURRENCE = 4.0  # pilot visits per distinct history needed to use control variates
PILOT = 0.25  # share of the evaluation budget that fits the control variates


class Responder:
  """An `ActFn`: one action per information-state id, uniform where `choice` is -1 or
  beyond its length."""

  def __init__(self, choice: np.ndarray):
    self.choice = choice

  def __call__(self, ids: np.ndarray, legal: np.ndarray) -> np.ndarray:
    probs = legal / legal.sum(1, keepdims=True)
    known = ids < self.choice.size
    a = np.full(ids.size, -1)
    a[known] = self.choice[ids[known]]
    fixed = np.flatnonzero(a >= 0)
    probs[fixed] = 0.0
    probs[fixed, a[fixed]] = 1.0
    return probs


class _Clock:
  """Seconds since t0, and whether a chunk of b episodes fits a limit (from the rate of
  the last chunk timed)."""

  def __init__(self, t0: float):
    self.t0, self.rate, self._b, self._t = t0, 0.0, 0, 0.0

  def start(self, b: int) -> None:
    self._b, self._t = b, time.perf_counter()

  def stop(self) -> None:
    self.rate = (time.perf_counter() - self._t) / max(self._b, 1)

  def fits(self, b: int, limit: float) -> bool:
    return time.perf_counter() - self.t0 + self.rate * b <= limit


class SampledValue(NamedTuple):
  values: tuple[float, float]       # mean return of the responder in seat 0 and seat 1
  ci95: tuple[float, float]
  exploitability: float             # (v0 + v1 - utility_sum) / 2
  exploitability_ci95: float
  episodes: int                     # per seat
  seconds: float


def sampled_value(cache: HistoryCache, responders, budget: Budget, seed: int,
                  pilot: float = PILOT, chunk: Optional[int] = None) -> SampledValue:
  """Plays responders[p] in seat p against the frozen policy until budget.eval_episodes
  per seat or budget.eval_seconds (at least two chunks after the pilot).

  The first `pilot` share of the budget fits a HistoryBaseline per seat; the rest is
  measured with it as control variate (an unbiased estimate whatever the pilot learned).
  Both seats play the same uniforms (episode i replays its deal in both seats), and the
  interval is that of the per-episode mean of the two seats. `episodes` counts both parts.
  """
  t0 = time.perf_counter()
  rng = np.random.default_rng([seed, 0xE7A1])
  chunk = chunk or EVAL_CHUNK
  if budget.eval_episodes is not None:
    chunk = max(1, min(chunk, budget.eval_episodes // 4))
  first = min(chunk, FIRST_CHUNK if budget.eval_seconds is None else SMALL_CHUNK)
  clock = _Clock(t0)
  baselines = [HistoryBaseline(0), HistoryBaseline(1)]
  acts = ([responders[0], None], [None, responders[1]])
  n = n_pilot = 0
  b = first
  while pilot > 0:  # the pilot: a share of the episodes, or of the seconds
    if budget.eval_episodes is not None and n_pilot >= pilot * budget.eval_episodes:
      break
    if (budget.eval_seconds is not None and n_pilot and
        not clock.fits(b, pilot * budget.eval_seconds)):
      break
    clock.start(b)
    for seat in (0, 1):
      play = cache.play(acts[seat], b, rng, visits=True)
      baselines[seat].add(cache, play.visits, play.returns)
    clock.stop()
    n_pilot += b
    b = min(2 * b, chunk)
  for bl in baselines:
    bl.fit(cache)
  # Control variates pay off when histories recur (each correction expands the siblings of
  # the histories played); on a game where the pilot's histories hardly recur, play plain.
  use = [bl if bl.recurrence >= MIN_RECURRENCE else None for bl in baselines]
  x0, x1 = [], []
  b = first
  while True:
    if budget.eval_episodes is not None:
      b = min(b, budget.eval_episodes - n_pilot - n)
      if b <= 0:
        break
    if (budget.eval_seconds is not None and len(x0) >= 2 and
        not clock.fits(b, budget.eval_seconds)):
      break
    u = cache.uniforms(b, rng)
    clock.start(b)
    for seat, out in ((0, x0), (1, x1)):
      play = cache.play(acts[seat], b, rng, uniforms=u, baseline=use[seat])
      out.append(play.returns[:, seat] -
                 (0.0 if play.correction is None else play.correction))
    clock.stop()
    n += b
    b = min(2 * b, chunk)
  x0, x1 = np.concatenate(x0), np.concatenate(x1)
  d = 0.5 * (x0 + x1)
  return SampledValue((float(x0.mean()), float(x1.mean())), (half_width(x0), half_width(x1)),
                      float(d.mean()), half_width(d), n_pilot + n, time.perf_counter() - t0)
