"""A learned best response to a frozen policy, from sampled episodes only.

Against a fixed policy, a best response of seat i is an optimal policy of a single-agent
decision problem whose states are i's information states. With perfect recall the law of
what follows i's action a at information state I (the opponent's moves and chance up to i's
next decision or the end) depends on (I, a) and the fixed policy only, not on how i plays
elsewhere. So it is estimated from episodes played with any behaviour of i:

  N(I, a)  visits of (I, a);  R(I, a) sum of the returns of episodes that end before i acts
  again;  C(I, a, I') transitions to i's next information state I'.
  Q(I, a) = (R(I, a) + sum_{I'} C(I, a, I') V(I')) / N(I, a),  V(I) = Q(I, pi(I)),

by backward induction over i's information states (deepest first). No tree is walked: the
model holds what sampled play has reached, and nothing needs importance weights, because
the counts estimate the next-state law under any behaviour of i.

Strata. The policy is frozen and chance's probabilities are known, so every sampled
history h carries its exact reach w(h) by chance and the opponent (the product of the
probabilities its moves were drawn with). Per (history h, action a) the model keeps what
followed before i acted again (a terminal history z, or i's next history h'), each with its
exact probability w(.) / w(h) given (h, a). Then
  q(h, a) = sum over the outcomes seen of p(o) value(o) + (1 - sum p(o)) (their sampled mean),
  Q(I, a) = sum_h w(h) q(h, a) / sum_h w(h) over the histories of I seen,
where value is u_i(z) or V(I(h')). This takes the sampling noise of chance and of the
opponent's moves out of Q wherever the histories sampled cover the law; the pooled counts
above are used where they do not (the Good-Turing missing mass of I's histories, the share
of (I, a)'s visits to histories seen once, above `missing_mass`), and where the histories
do not recur at all (the HistoryCache was emptied).

Training plays rounds of episodes in each seat: i follows the optimistic choice
argmax Q + ucb * sigma / sqrt(N) (an action never tried first) mixed with `explore`
uniform; the opponent plays the frozen policy. The responder is then fixed to the
pessimistic choice argmax Q - lcb * sigma / sqrt(N) (sigma: the standard deviation of the
returns), which avoids the actions whose estimate is high only because it rests on few
episodes. Its value is measured on fresh episodes (armac_spiel.approx.responder); the
model's own value at the root is biased upward by the max and only reported.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from armac_spiel.approx.budget import Budget, Estimate
from armac_spiel.approx.histories import Grow, HistoryCache, Play, Registry
from armac_spiel.approx.responder import Responder, sampled_value


SMALL_BATCH = 64
MAX_STRATA = 5_000_000  # beyond this many (history, action) strata the model pools


@dataclasses.dataclass(frozen=True)
class LearnedBRConfig:
  first_batch: int = 4096     # episodes per seat in the first round; doubled each round
  max_batch: int = 65536      # up to this
  explore: float = 0.2        # uniform share of the training behaviour
  ucb: float = 1.0            # optimism of the training behaviour (return std / sqrt(N))
  lcb: float = 1.0            # pessimism of the final choice (same unit)
  race: bool = False          # behaviour: uniform over the actions still in the race
  stratify: bool = True       # Q over the histories of I weighted by their exact reach
  missing_mass: float = 0.05  # ... where the Good-Turing missing mass is at most this

  def __post_init__(self):
    if not 1 <= self.first_batch <= self.max_batch:
      raise ValueError(f"learned_br first_batch={self.first_batch}, max_batch="
                       f"{self.max_batch}: need 1 <= first_batch <= max_batch")
    if not 0.0 <= self.explore <= 1.0:
      raise ValueError(f"learned_br explore={self.explore}: must lie in [0, 1]")
    if self.ucb < 0 or self.lcb < 0:
      raise ValueError(f"learned_br ucb={self.ucb}, lcb={self.lcb}: must be >= 0")


class ResponderModel:
  """The counts of one seat's decision problem, over its Registry's ids.

  Edges (I, a) -> I' carry their counts. With perfect recall each I' has one parent pair;
  where the information-state strings forget the order of what was seen (universal_poker
  sorts its board cards) an I' may follow several, and the model is a DAG: I' is still one
  decision, so the responder stays one fixed strategy and its measured value a lower
  bound."""

  def __init__(self, registry: Registry, num_actions: int):
    self.registry = registry
    self.a = num_actions
    self.n = Grow(num_actions, np.float64)
    self.r = Grow(num_actions, np.float64)
    self.first = Grow(None, np.float64)      # episodes whose first decision is I
    self.edge_pair = Grow(None, np.int64)    # I * A + a
    self.edge_child = Grow(None, np.int64)   # I'
    self.edge_count = Grow(None, np.float64)
    self._edges: dict[int, int] = {}         # (pair << 32) | child -> edge index
    # Strata: one per (history h, action a) of the seat, weighted by h's reach by chance and
    # the opponent (exact: the probabilities drawn on the way). Its edges go to what follows
    # before the seat acts again (a terminal history, or the seat's next history), each with
    # its exact probability given (h, a) and its count.
    self.strata_ok, self._cache_epoch = True, None
    self._strata: dict[int, int] = {}        # h * A + a -> stratum
    self.s_pair = Grow(None, np.int64)
    self.s_w = Grow(None, np.float64)
    self.s_n = Grow(None, np.float64)
    self._sedges: dict[int, int] = {}        # (stratum << 32) | next history -> edge
    self.se_stratum = Grow(None, np.int64)
    self.se_child = Grow(None, np.int64)     # the seat's next information state, -1: end
    self.se_term = Grow(None, np.float64)    # the seat's return at a terminal history
    self.se_p = Grow(None, np.float64)
    self.se_count = Grow(None, np.float64)
    self.episodes = 0
    self.none_return = 0.0   # returns of episodes in which the seat never acted
    self.ret_sum = self.ret_sq = 0.0

  @property
  def size(self) -> int:
    return self.first.n

  def _grow(self) -> None:
    k = len(self.registry) - self.first.n
    if k > 0:
      self.n.add(np.zeros((k, self.a)))
      self.r.add(np.zeros((k, self.a)))
      self.first.add(np.zeros(k))

  def add(self, play: Play, seat: int, cache_epoch: int = 0) -> None:
    """Counts the seat's decisions of `play`; `cache_epoch` (HistoryCache.resets) tells
    whether the history ids of the strata still name the same histories."""
    self._grow()
    g = play.returns[:, seat]
    self.episodes += g.size
    self.ret_sum += float(g.sum())
    self.ret_sq += float((g * g).sum())
    ep, ids, acts = play.rec_episode, play.rec_id, play.rec_action
    acted = np.zeros(g.size, dtype=bool)
    acted[ep] = True
    self.none_return += float(g[~acted].sum())
    if not ep.size:
      return
    m = self.size
    pair = ids * self.a + acts
    last = np.r_[ep[1:] != ep[:-1], True]
    first = np.r_[True, ep[1:] != ep[:-1]]
    self.n.view.reshape(-1)[:] += np.bincount(pair, minlength=m * self.a)
    self.r.view.reshape(-1)[:] += np.bincount(pair[last], weights=g[ep[last]],
                                             minlength=m * self.a)
    self.first.view[:] += np.bincount(ids[first], minlength=m)
    keys = (pair[np.flatnonzero(~first) - 1] << 32) | ids[~first]
    uniq, counts = np.unique(keys, return_counts=True)
    idx = np.empty(uniq.size, dtype=np.int64)
    for j, k in enumerate(uniq.tolist()):
      e = self._edges.get(k)
      if e is None:
        e = self._edges[k] = self.edge_pair.append(k >> 32)
        self.edge_child.append(k & 0xFFFFFFFF)
        self.edge_count.append(0.0)
      idx[j] = e
    np.add.at(self.edge_count.data, idx, counts)
    if self._cache_epoch is None:
      self._cache_epoch = cache_epoch
    if self.strata_ok and (cache_epoch != self._cache_epoch or play.rec_node is None or
                           len(self._strata) > MAX_STRATA):
      self.strata_ok = False  # the pooled counts carry on alone
      self._strata, self._sedges = {}, {}
    if self.strata_ok:
      self._add_strata(play, seat, pair, first, last)

  def _add_strata(self, play: Play, seat: int, pair, first, last) -> None:
    ep = play.rec_episode
    keys = play.rec_node * self.a + play.rec_action
    sid = self._lookup(self._strata, keys, lambda k, j: (
        self.s_pair.append(pair[j]), self.s_w.append(play.rec_reach[j]),
        self.s_n.append(0.0))[0])
    np.add.at(self.s_n.data, sid, 1.0)
    # What follows each decision: the next decision's history, else the episode's end.
    nxt = np.minimum(np.arange(ep.size) + 1, ep.size - 1)
    node = np.where(last, play.final_node[ep], play.rec_node[nxt])
    reach = np.where(last, play.final_reach[ep], play.rec_reach[nxt])
    child = np.where(last, -1, play.rec_id[nxt])
    term = np.where(last, play.returns[ep, seat], 0.0)
    prob = reach / np.maximum(play.rec_reach, 1e-300)
    ekeys = (sid << 32) | node
    idx = self._lookup(self._sedges, ekeys, lambda k, j: (
        self.se_stratum.append(sid[j]), self.se_child.append(child[j]),
        self.se_term.append(term[j]), self.se_p.append(prob[j]),
        self.se_count.append(0.0))[0])
    np.add.at(self.se_count.data, idx, 1.0)

  @staticmethod
  def _lookup(table: dict, keys: np.ndarray, new) -> np.ndarray:
    """Index of each key in `table`; new(key, position of its first occurrence) makes one."""
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    out = np.empty(uniq.size, dtype=np.int64)
    for j, (k, f) in enumerate(zip(uniq.tolist(), first.tolist())):
      i = table.get(k)
      if i is None:
        i = table[k] = new(k, f)
      out[j] = i
    return out[inv.reshape(-1)]

  @property
  def sigma(self) -> float:
    if self.episodes < 2:
      return 1.0
    mean = self.ret_sum / self.episodes
    return max(np.sqrt(max(self.ret_sq / self.episodes - mean * mean, 0.0)), 1e-9)

  def solve(self, lcb: float, stratify: bool = True, missing_mass: float = 0.05
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """(Q (S, A) with NaN where never tried, pessimistic choice (S,) (-1: never acted),
    model root value).

    stratify: where the histories seen of (I, a) hold all but `missing_mass` of its
    visits' law (Good-Turing: the share of visits to histories seen once), Q(I, a) weighs
    each history's mean by its exact reach instead of its sampled frequency."""
    self._grow()
    s, a = self.size, self.a
    n = self.n.view
    pair, child, count = self.edge_pair.view, self.edge_child.view, self.edge_count.view
    parent_id = pair // a
    depth = np.zeros(s, dtype=np.int64)
    for _ in range(s + 1):  # longest path from a first decision: parents come first
      new = np.zeros(s, dtype=np.int64)
      np.maximum.at(new, child, depth[parent_id] + 1)
      if np.array_equal(new, depth):
        break
      depth = new
    total = self.r.view.copy()
    q = np.full((s, a), np.nan)
    choice = np.full(s, -1, dtype=np.int64)
    v = np.zeros(s)
    penalty = lcb * self.sigma / np.sqrt(np.maximum(n, 1.0))
    edge_depth = depth[child]
    strata = stratify and self.strata_ok and self.s_pair.n > 0
    if strata:
      sp, sw, sn = self.s_pair.view, self.s_w.view, self.s_n.view
      s_depth = depth[sp // a]
      se_s, se_c, se_t = self.se_stratum.view, self.se_child.view, self.se_term.view
      se_p, se_n = self.se_p.view, self.se_count.view
      se_depth = s_depth[se_s]
    for d in range(int(depth.max(initial=0)), -1, -1):
      ids = np.flatnonzero(depth == d)
      tried = n[ids] > 0
      qd = np.where(tried, total[ids] / np.maximum(n[ids], 1.0), np.nan)
      if strata:
        # A stratum's value: exact weights on the outcomes seen, their sampled mean on the
        # probability not yet seen.
        e = np.flatnonzero(se_depth == d)
        val = np.where(se_c[e] >= 0, v[np.maximum(se_c[e], 0)], se_t[e])
        m = sp.size
        seen_p = np.minimum(np.bincount(se_s[e], weights=se_p[e], minlength=m), 1.0)
        exact = np.bincount(se_s[e], weights=se_p[e] * val, minlength=m)
        mean = np.bincount(se_s[e], weights=se_n[e] * val, minlength=m) / np.maximum(sn, 1.0)
        k = np.flatnonzero(s_depth == d)
        qs = exact[k] + (1.0 - seen_p[k]) * mean[k]
        num = np.bincount(sp[k], weights=sw[k] * qs, minlength=s * a).reshape(s, a)[ids]
        den = np.bincount(sp[k], weights=sw[k], minlength=s * a).reshape(s, a)[ids]
        once = np.bincount(sp[k], weights=(sn[k] == 1), minlength=s * a).reshape(s, a)[ids]
        use = tried & (den > 0) & (once <= missing_mass * n[ids])
        qd = np.where(use, num / np.where(den > 0, den, 1.0), qd)
      q[ids] = qd
      score = np.where(tried, qd - penalty[ids], -np.inf)
      ch = score.argmax(1)
      choice[ids] = np.where(tried.any(1), ch, -1)
      v[ids] = np.nan_to_num(qd[np.arange(ids.size), ch])
      e = np.flatnonzero(edge_depth == d)
      np.add.at(total.reshape(-1), pair[e], count[e] * v[child[e]])
    root = (float((self.first.view * v).sum()) + self.none_return) / max(self.episodes, 1)
    return q, choice, root

  def behaviour(self, q: np.ndarray, ucb: float, explore: float, race: bool = False):
    """The training ActFn: optimistic choice (race: uniform over the actions whose upper
    bound reaches the best lower bound) mixed with `explore` uniform."""
    n = self.n.view[:q.shape[0]]
    bonus = ucb * self.sigma / np.sqrt(np.maximum(n, 1.0))
    score = np.where(n > 0, q + bonus, np.inf)
    low = np.where(n > 0, q - bonus, -np.inf)

    def act(ids: np.ndarray, legal: np.ndarray) -> np.ndarray:
      uniform = legal / legal.sum(1, keepdims=True)
      # Illegal actions have N = 0 and an infinite score: mask them before the argmax.
      known = ids < q.shape[0]
      p = uniform.copy()
      if known.any():
        k = np.flatnonzero(known)
        sc = np.where(legal[k], score[ids[k]], -np.inf)
        if race:
          best_low = np.where(legal[k], low[ids[k]], -np.inf).max(1, keepdims=True)
          cand = legal[k] & (sc >= best_low)
          greedy = cand / cand.sum(1, keepdims=True)
        else:
          greedy = np.zeros_like(uniform[k])
          greedy[np.arange(k.size), sc.argmax(1)] = 1.0
        p[k] = (1 - explore) * greedy + explore * uniform[k]
      return p

    return act


def learn(cache: HistoryCache, budget: Budget, seed: int,
          config: LearnedBRConfig = LearnedBRConfig()) -> tuple[list, dict]:
  """Trains one responder per seat; returns ([Responder seat 0, seat 1], stats)."""
  t0 = time.perf_counter()
  rng = np.random.default_rng([seed, 0xB7])
  models = [ResponderModel(cache.registries[p], cache.num_actions) for p in (0, 1)]
  # Under a seconds budget start small: on a large game every episode expands new
  # histories through pyspiel, and the first round's cost is not known in advance.
  episodes = 0
  batch = config.first_batch if budget.seconds is None else min(config.first_batch,
                                                                  SMALL_BATCH)
  acts = [None, None]
  round_s, last_b = 0.0, 1
  while True:
    if budget.episodes is not None and episodes >= budget.episodes:
      break
    b = batch if budget.episodes is None else max(1, min(batch, (budget.episodes - episodes)
                                                        // 2))
    # Stop before a round that would overrun the seconds (at the last round's rate).
    if (budget.seconds is not None and episodes and
        time.perf_counter() - t0 + round_s * b / last_b > budget.seconds):
      break
    t_round, last_b = time.perf_counter(), b
    for seat in (0, 1):
      act = [None, None]
      act[seat] = acts[seat]
      play = cache.play(act, b, rng, record=seat)
      models[seat].add(play, seat, cache.resets)
      episodes += b
    for seat in (0, 1):
      q, _, _ = models[seat].solve(config.lcb, config.stratify, config.missing_mass)
      acts[seat] = models[seat].behaviour(q, config.ucb, config.explore, config.race)
    round_s = time.perf_counter() - t_round
    batch = min(2 * batch, config.max_batch)
  responders, roots = [], []
  for seat in (0, 1):
    _, choice, root = models[seat].solve(config.lcb, config.stratify, config.missing_mass)
    responders.append(Responder(choice))
    roots.append(root)
  stats = {"train_episodes": episodes, "train_s": time.perf_counter() - t0,
           "train_estimate": 0.5 * (roots[0] + roots[1]),
           "infostates": int(sum(int((m.n.view.sum(1) > 0).sum()) for m in models))}
  return responders, stats


def learned_br(cache: HistoryCache, budget: Budget, seed: int,
               config: LearnedBRConfig = LearnedBRConfig()) -> Estimate:
  """Learns a responder per seat against the cache's frozen policy, then measures it on
  fresh episodes."""
  t0 = time.perf_counter()
  responders, stats = learn(cache, budget, seed, config)
  sv = sampled_value(cache, responders, budget, seed)
  return Estimate(method="learned_br", exploitability=sv.exploitability,
                  ci95=sv.exploitability_ci95, br_values=sv.values, br_ci95=sv.ci95,
                  train_episodes=stats["train_episodes"], eval_episodes=sv.episodes,
                  seconds=time.perf_counter() - t0, train_s=stats["train_s"],
                  eval_s=sv.seconds, train_estimate=stats["train_estimate"],
                  infostates=stats["infostates"], histories=cache.expanded)
