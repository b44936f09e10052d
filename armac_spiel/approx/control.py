"""Control variates for sampled evaluation: a value per history, fitted on pilot episodes.

`HistoryBaseline` is f(h) for one seat: the mean return of the pilot episodes that passed
through h, shrunk towards f(parent) with `shrink` pseudo-episodes (a history no pilot
episode reached takes its parent's value; a terminal history its own return). Played
with `HistoryCache.play(baseline=f)`, an episode's return minus its correction has the same
mean as the return for any f, and a smaller variance the closer f is to the true value of
each history under the two fixed strategies (the pilot episodes are not reused, so f is
independent of the episodes it corrects).
"""

from __future__ import annotations

import numpy as np

from armac_spiel.approx.histories import TERMINAL, HistoryCache


class HistoryBaseline:
  """f over the histories of a HistoryCache, for seat `seat`."""

  def __init__(self, seat: int, shrink: float = 2.0):
    self.seat = seat
    self.shrink = shrink
    self.sums = np.zeros(0)
    self.counts = np.zeros(0)
    self.f = np.zeros(0)
    self.resets = None

  def add(self, cache: HistoryCache, visits: tuple[np.ndarray, np.ndarray],
          returns: np.ndarray) -> None:
    """Credits each episode's return (of `seat`) to every history it visited."""
    if self.resets is not None and self.resets != cache.resets:
      self.sums, self.counts = np.zeros(0), np.zeros(0)  # node ids were renumbered
    self.resets = cache.resets
    ep, nodes = visits
    m = cache.num_nodes
    sums = np.bincount(nodes, weights=returns[ep, self.seat], minlength=m)
    counts = np.bincount(nodes, minlength=m).astype(np.float64)
    sums[:self.sums.size] += self.sums
    counts[:self.counts.size] += self.counts
    self.sums, self.counts = sums, counts

  @property
  def recurrence(self) -> float:
    """Pilot visits per distinct history visited."""
    seen = int((self.counts > 0).sum())
    return float(self.counts.sum()) / seen if seen else 0.0

  def fit(self, cache: HistoryCache) -> None:
    m = self.sums.size
    f = np.zeros(m)
    depth = cache.depth.data[:m]
    parent = cache.parent.data[:m]
    cnt, sums = self.counts, self.sums
    for d in range(int(depth.max(initial=0)) + 1):
      ids = np.flatnonzero(depth == d)
      prior = f[parent[ids]] if d > 0 else np.zeros(ids.size)
      if d == 0:
        f[ids] = np.where(cnt[ids] > 0, sums[ids] / np.maximum(cnt[ids], 1), 0.0)
      else:
        f[ids] = (sums[ids] + self.shrink * prior) / (cnt[ids] + self.shrink)
    self.f = f

  def __call__(self, cache: HistoryCache, nodes: np.ndarray) -> np.ndarray:
    if self.resets != cache.resets or not self.f.size:
      return np.zeros(nodes.size)
    out = np.empty(nodes.size)
    term = cache.kind.data[nodes] == TERMINAL
    out[term] = cache.node_returns(nodes[term])[:, self.seat]
    rest = np.flatnonzero(~term)
    n = nodes[rest]
    while True:
      beyond = n >= self.f.size
      if not beyond.any():
        break
      n = np.where(beyond, cache.parent.data[n], n)
    out[rest] = self.f[n]
    return out
