"""`TreeSampler`: B episodes played in lockstep on a compiled tree with array gathers only
(no pyspiel calls)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

from games.sampler import (PolicyFn, Sampler, StepBatch, TablePolicy, Trajectories,
                           sample_actions)
from games.spiel import SpielGame
from games.tree.arrays import CHANCE, DECISION, TERMINAL
from games.tree.compile import DEFAULT_MAX_NODES, GameTree, compile_tree


class _ChancePaths(NamedTuple):
  """Runs of consecutive chance nodes, flattened: one row per outcome sequence.

  A segment holds the sequences from one entry chance node (the root or a chance node whose
  parent decides) to the first non-chance node; `cum` is the segment id plus the sequence's
  normalised cumulative probability, so one `searchsorted` on `segment + u` draws a run."""
  segment: np.ndarray   # (M,) int64: segment of each entry chance node, -1 elsewhere
  last: np.ndarray      # (S,) int64: last path row of each segment
  cum: np.ndarray       # (P,) float64: segment + cumulative probability within the segment
  target: np.ndarray    # (P,) int64: first non-chance node of the run
  length: np.ndarray    # (P,) int64: chance outcomes in the run
  outcomes: np.ndarray  # (P, L) int64: chance outcomes in order, -1 padded


def _chance_paths(t: GameTree) -> _ChancePaths:
  kind, parent = t.kind.numpy(), t.parent.numpy()
  children, outcome, prob = t.children.numpy(), t.chance_outcome.numpy(), t.chance_prob.numpy()
  is_chance = kind == CHANCE
  entries = np.flatnonzero(is_chance & ((parent < 0) | ~is_chance[np.maximum(parent, 0)]))
  segment = np.full(t.num_nodes, -1, dtype=np.int64)
  last, cum, target, runs = [], [], [], []
  for s, root in enumerate(entries):
    segment[root] = s
    paths, todo = [], [(int(root), (), 1.0)]
    while todo:
      node, seq, pr = todo.pop()
      if not is_chance[node]:
        paths.append((node, seq, pr))
        continue
      for k in reversed(range(int((outcome[node] >= 0).sum()))):
        todo.append((int(children[node, k]), seq + (int(outcome[node, k]),), pr * prob[node, k]))
    p = np.cumsum([x[2] for x in paths])
    cum.append(s + p / p[-1])
    target.extend(x[0] for x in paths)
    runs.extend(x[1] for x in paths)
    last.append(len(target) - 1)
  width = max((len(r) for r in runs), default=1)
  outcomes = np.full((len(runs), width), -1, dtype=np.int64)
  for i, r in enumerate(runs):
    outcomes[i, :len(r)] = r
  cum = np.concatenate(cum) if cum else np.zeros(0)
  cum[np.asarray(last, dtype=np.int64)] = np.arange(len(last)) + 1.0  # exact segment ends
  return _ChancePaths(segment, np.asarray(last, dtype=np.int64), cum,
                      np.asarray(target, dtype=np.int64),
                      np.asarray([len(r) for r in runs], dtype=np.int64), outcomes)


class TreeSampler(Sampler):
  """Plays B episodes in lockstep on the compiled tree, one policy call per decision step.

  Steps record node ids, actions and behaviour probabilities only; the padded encodings
  (information states, histories, legal masks) are gathered from the tree's tables once at the
  end. Each run of consecutive chance nodes is drawn with one uniform per episode."""

  def __init__(self, sgame: SpielGame, seed: int, max_nodes: int = DEFAULT_MAX_NODES):
    super().__init__(sgame, seed)
    self.tree = compile_tree(sgame.game_string, max_nodes)
    t = self.tree
    m, s = t.num_nodes, t.num_infostates
    self._paths = cp = _chance_paths(t)
    # Guide table (Chen & Asau) over segment + u: bin j = floor(key * K) starts the search at
    # the first path whose cumulative sum exceeds j / K; `_guide_steps` increments finish it.
    # K is a power of two, so j / K and key * K are exact and the result equals searchsorted.
    n_seg = len(cp.last)
    widest = int(np.diff(np.concatenate([[-1], cp.last])).max()) if n_seg else 1
    self._guide_k = 1 << int(np.ceil(np.log2(4 * widest)))
    points = np.arange(n_seg * self._guide_k + 1) / self._guide_k
    self._guide = np.searchsorted(cp.cum, points, side="right")
    self._guide_steps = int(np.diff(self._guide).max()) if n_seg else 0
    self._cum_ext = np.append(cp.cum, np.inf)
    self._children = t.children.numpy()
    self._children_flat = self._children.reshape(-1)  # child of (n, a) at n * width + a
    self._child_width = self._children.shape[1]
    self._terminal = np.append(t.kind.numpy() == TERMINAL, False)
    # Index m (numpy: -1) is the padding node; infostate s is the padding (zero) row.
    self._infostate = np.append(np.where(t.infostate.numpy() >= 0, t.infostate.numpy(), s), s)
    self._player = np.append(t.player.numpy(), -1)
    self._returns = t.returns.numpy().astype(np.float32)
    self._info = t.info_ext
    self._legal = torch.cat([t.info_legal, torch.zeros(1, t.num_actions, dtype=torch.bool)])
    self._history = t.history_ext
    # Most decision steps and chance outcomes on any root-to-leaf path.
    dec = np.zeros(m, dtype=np.int64)
    cha = np.zeros(m, dtype=np.int64)
    par = t.parent.numpy()
    kind = t.kind.numpy()
    b = t.depth_bounds
    for d in range(1, len(b) - 1):
      lo, hi = b[d], b[d + 1]
      dec[lo:hi] = dec[par[lo:hi]] + (kind[par[lo:hi]] == DECISION)
      cha[lo:hi] = cha[par[lo:hi]] + (kind[par[lo:hi]] == CHANCE)
    self._max_steps = max(int(dec.max()), 1)
    self._max_chance = max(int(cha.max()), 1)

  def _path_rows(self, seg: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Path rows drawn in segments `seg` by uniforms `u`: searchsorted(cum, seg + u, 'right')
    clamped to the segment's last row, looked up through the guide table."""
    key = seg + u
    k = self._guide[(key * self._guide_k).astype(np.int64)]
    for _ in range(self._guide_steps):
      k += self._cum_ext[k] <= key
    return np.minimum(k, self._paths.last[seg], out=k)

  def _advance(self, ep, node, chance, count, final, length, steps):
    """Resolves chance runs in place, logs terminals (node in `final`, decision steps taken in
    `length`); returns the rows that decide."""
    cp = self._paths
    seg = cp.segment[node]
    rows = np.flatnonzero(seg >= 0)
    if rows.size:
      sg = seg[rows]
      k = self._path_rows(sg, self.rng.random(rows.size))
      e = ep[rows]
      n = cp.length[k]
      pos = count[e]
      for j in range(cp.outcomes.shape[1]):
        sel = n > j
        if sel.all():
          chance[e, pos + j] = cp.outcomes[k, j]
        elif sel.any():
          chance[e[sel], pos[sel] + j] = cp.outcomes[k[sel], j]
      count[e] = pos + n
      node[rows] = cp.target[k]
    term = self._terminal[node]
    if term.any():
      idx = np.flatnonzero(term)
      done = ep[idx]
      final[done] = node[idx]
      length[done] = steps
      idx = np.flatnonzero(~term)
      return ep[idx], node[idx]
    return ep, node

  def _table(self, policy: TablePolicy):
    """The policy over every information state (one call), as float32 probabilities with a
    zero padding row, and per node [cdf (A), total, nextafter(total, 0)] in float64, laid
    out as `sample_actions` builds them: both paths draw the same actions from the same
    uniforms."""
    s_n, a_dim = self.tree.num_infostates, self.tree.num_actions
    with torch.no_grad():
      probs = policy.fn(self._info[:s_n], self._legal[:s_n]).detach().to("cpu")
    p = probs.to(torch.float64).clamp_min(0.0).mul_(self._legal[:s_n])
    tab = np.zeros((s_n + 1, a_dim + 2))
    tab[:s_n, :a_dim] = torch.cumsum(p, 1).numpy()
    tab[:, a_dim] = tab[:, a_dim - 1]
    tab[:, a_dim + 1] = np.nextafter(tab[:, a_dim], 0.0)
    beh = torch.cat([probs.to(torch.float32), torch.zeros(1, a_dim)])
    return beh, tab[self._infostate]

  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    """Plays `batch_size` episodes. A `TablePolicy` is evaluated once on every information
    state and each step is a table look-up; any other PolicyFn is called once per step."""
    t = self.tree
    b, a_dim, t_cap, pad = batch_size, t.num_actions, self._max_steps, t.num_nodes
    tabular = isinstance(policy_fn, TablePolicy)
    if tabular:
      beh_table, node_tab = self._table(policy_fn)
    else:
      beh = np.zeros((b, t_cap, a_dim), dtype=np.float32)
    nodes = np.full((t_cap, b), pad, dtype=np.int64)  # time-major: one row write per step
    action = np.full((t_cap, b), -1, dtype=np.int64)
    chance = np.full((b, self._max_chance), -1, dtype=np.int64)
    count = np.zeros(b, dtype=np.int64)
    final = np.zeros(b, dtype=np.int64)
    length = np.zeros(b, dtype=np.int64)
    ep, node = self._advance(np.arange(b), np.zeros(b, dtype=np.int64), chance, count, final,
                             length, 0)
    step = 0
    while ep.size:
      if tabular:
        c = node_tab[node]
        key = np.minimum(self.rng.random(ep.size) * c[:, a_dim], c[:, a_dim + 1])
        acts = (c[:, 0] <= key).astype(np.int64)  # = count of cdf entries <= key, clamped
        for k in range(1, a_dim - 1):
          acts += c[:, k] <= key
      else:
        s = torch.from_numpy(self._infostate[node])
        legal = torch.index_select(self._legal, 0, s)
        batch = StepBatch(torch.index_select(self._info, 0, s), legal,
                          torch.from_numpy(self._player[node]), torch.from_numpy(ep), step, s)
        probs = policy_fn(batch)
        acts = sample_actions(probs, legal, self.rng.random(ep.size)).numpy()
        beh[ep, step] = probs.detach().to("cpu", torch.float32).numpy()
      nodes[step, ep] = node
      action[step, ep] = acts
      node = self._children_flat[node * self._child_width + acts]
      step += 1
      ep, node = self._advance(ep, node, chance, count, final, length, step)
    t_max = max(step, 1)
    ids = np.ascontiguousarray(nodes[:t_max].T)
    ids_t = torch.from_numpy(ids)
    valid = ids != pad
    sid = functools.cache(lambda: torch.from_numpy(self._infostate[ids]).view(-1))
    if tabular:
      behaviour = lambda: torch.index_select(beh_table, 0, sid()).view(b, t_max, a_dim)
    else:
      behaviour = torch.from_numpy(np.ascontiguousarray(beh[:, :t_max]) if t_max < t_cap
                                   else beh)
    # Encodings (and the other per-step fields) are gathered from the tree's tables when
    # first read.
    info = lambda: torch.index_select(self._info, 0, sid()).view(b, t_max, -1)
    hist = lambda: torch.index_select(self._history, 0, ids_t.view(-1)).view(b, t_max, -1)
    legal = lambda: torch.index_select(self._legal, 0, sid()).view(b, t_max, a_dim)
    player = lambda: torch.from_numpy(self._player[ids])
    c_max = max(int(count.max()) if b else 0, 1)
    return Trajectories(
        info, hist, legal, player, torch.from_numpy(np.ascontiguousarray(action[:t_max].T)),
        behaviour, torch.from_numpy(valid), torch.from_numpy(length),
        torch.from_numpy(self._returns[final]),
        torch.from_numpy(np.ascontiguousarray(chance[:, :c_max])),
        lambda: torch.from_numpy(np.where(valid, ids, -1)))
