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
from games.tree.arrays import CHANCE, DECISION, TERMINAL, TreeArrays
from games.tree.compile import DEFAULT_MAX_NODES, compile_tree


class ChancePaths(NamedTuple):
  """Runs of consecutive chance nodes, flattened: one row per outcome sequence.

  A segment holds the sequences from one entry chance node (the root or a chance node whose
  parent decides) to the first non-chance node, in depth-first order; `cum` is the segment
  id plus the sequence's normalised cumulative probability, so one `searchsorted` on
  `segment + u` draws a run."""
  segment: np.ndarray   # (M,) segment of each entry chance node, -1 elsewhere
  last: np.ndarray      # (G,) int64: last path row of each segment
  cum: np.ndarray       # (P,) float64: segment + cumulative probability within the segment
  target: np.ndarray    # (P,) int64: first non-chance node of the run
  length: np.ndarray    # (P,) int64: chance outcomes in the run
  outcomes: np.ndarray  # (P, L) int64: chance outcomes in order, -1 padded


def _children(a: TreeArrays, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Children of `nodes` (parent order, then slot order) and their parent's row."""
  cnt = a.num_children[nodes].astype(np.int64)
  local = np.repeat(np.arange(len(nodes)), cnt)
  start = np.cumsum(cnt) - cnt
  return a.first_child[nodes][local] + (np.arange(len(local)) - start[local]), local


def chance_paths(a: TreeArrays) -> ChancePaths:
  """The chance runs of a tree, expanded one chance level at a time."""
  kind, parent = a.kind, a.parent
  is_chance = kind == CHANCE
  entries = np.flatnonzero(is_chance & ((parent < 0) | ~is_chance[np.maximum(parent, 0)]))
  segment = np.full(a.num_nodes, -1, dtype=np.int64 if a.num_nodes >= 2**31 else np.int32)
  segment[entries] = np.arange(len(entries))
  edge_prob = a.edge_probs[a.edge_prob_id]
  # Rows of the current chance frontier: node, segment, probability, slots and outcomes.
  node, seg = entries, np.arange(len(entries))
  prob = np.ones(len(entries))
  slots = np.zeros((len(entries), 0), dtype=np.int64)
  outs = slots
  done = []  # (target, segment, probability, slots, outcomes) per run length
  while node.size:
    child, local = _children(a, node)
    prob = prob[local] * edge_prob[child]
    slot = child - a.first_child[node][local]
    slots = np.concatenate([slots[local], slot[:, None]], 1)
    outs = np.concatenate([outs[local], a.action[child][:, None].astype(np.int64)], 1)
    seg = seg[local]
    c = is_chance[child]
    done.append((child[~c], seg[~c], prob[~c], slots[~c], outs[~c]))
    node, seg, prob, slots, outs = child[c], seg[c], prob[c], slots[c], outs[c]
  width = max(len(done), 1)
  pad = lambda x, r: np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=r)
  target = np.concatenate([d[0] for d in done]) if done else np.zeros(0, dtype=np.int64)
  seg = np.concatenate([d[1] for d in done]) if done else np.zeros(0, dtype=np.int64)
  prob = np.concatenate([d[2] for d in done]) if done else np.zeros(0)
  slots = np.concatenate([pad(d[3], -1) for d in done]) if done else np.zeros((0, 1), np.int64)
  outs = np.concatenate([pad(d[4], -1) for d in done]) if done else np.full((0, 1), -1)
  length = np.concatenate([np.full(len(d[0]), j + 1) for j, d in enumerate(done)]
                          ) if done else np.zeros(0, dtype=np.int64)
  # Depth-first order within each segment: lexicographic in the slots (runs are prefix-free).
  order = np.lexsort(tuple(slots[:, j] for j in range(width - 1, -1, -1)) + (seg,))
  target, seg, prob, length, outs = (x[order] for x in (target, seg, prob, length, outs))
  n_seg = len(entries)
  sizes = np.bincount(seg, minlength=n_seg)
  first = np.cumsum(sizes) - sizes
  last = first + sizes - 1
  cs = prob.copy()  # cumulative sums within each segment, added left to right
  by_size = np.argsort(-sizes, kind="stable")
  for j in range(1, int(sizes.max(initial=0))):
    active = first[by_size[:np.searchsorted(-sizes[by_size], -j, side="left")]]
    cs[active + j] += cs[active + j - 1]
  cum = seg + cs / cs[last[seg]]
  cum[last] = np.arange(n_seg) + 1.0  # exact segment ends
  return ChancePaths(segment, last.astype(np.int64), cum, target.astype(np.int64),
                     length.astype(np.int64), outs.astype(np.int64))


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
    a = t.arrays
    self._paths = cp = chance_paths(a)
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
    # The child after action a at a decision node n: first_child[n] + rank[s(n) * A + a].
    self._first_child = a.first_child
    self._rank = (np.cumsum(a.info_legal, 1) - 1).reshape(-1)
    self._terminal = np.append(a.kind == TERMINAL, False)
    # Index m (numpy: -1) is the padding node; infostate s is the padding (zero) row.
    inf = a.infostate.astype(np.int64)
    self._infostate = np.append(np.where(inf >= 0, inf, s), s)
    self._player = np.append(a.player, -1).astype(np.int64)
    self._return_rows = a.return_values.astype(np.float32)
    self._return_id = a.return_id
    self._info = t.info_ext
    self._legal = torch.cat([t.info_legal, torch.zeros(1, t.num_actions, dtype=torch.bool)])
    # Most decision steps and chance outcomes on any root-to-leaf path.
    dec = np.zeros(m, dtype=np.int16)
    cha = np.zeros(m, dtype=np.int16)
    par, kind = a.parent, a.kind
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
    zero padding row, and per information state [cdf (A), total, nextafter(total, 0)] in
    float64, laid out as `sample_actions` builds them: both paths draw the same actions from
    the same uniforms."""
    s_n, a_dim = self.tree.num_infostates, self.tree.num_actions
    with torch.no_grad():
      probs = policy.fn(self._info[:s_n], self._legal[:s_n]).detach().to("cpu")
    p = probs.to(torch.float64).clamp_min(0.0).mul_(self._legal[:s_n])
    tab = np.zeros((s_n + 1, a_dim + 2))
    tab[:s_n, :a_dim] = torch.cumsum(p, 1).numpy()
    tab[:, a_dim] = tab[:, a_dim - 1]
    tab[:, a_dim + 1] = np.nextafter(tab[:, a_dim], 0.0)
    beh = torch.cat([probs.to(torch.float32), torch.zeros(1, a_dim)])
    return beh, tab

  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    """Plays `batch_size` episodes. A `TablePolicy` is evaluated once on every information
    state and each step is a table look-up; any other PolicyFn is called once per step."""
    t = self.tree
    b, a_dim, t_cap, pad = batch_size, t.num_actions, self._max_steps, t.num_nodes
    tabular = isinstance(policy_fn, TablePolicy)
    if tabular:
      beh_table, state_tab = self._table(policy_fn)
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
        c = state_tab[self._infostate[node]]
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
      node = self._first_child[node] + self._rank[self._infostate[node] * a_dim + acts]
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
    hist = lambda: t.history_of(torch.where(ids_t == pad, -1, ids_t))
    legal = lambda: torch.index_select(self._legal, 0, sid()).view(b, t_max, a_dim)
    player = lambda: torch.from_numpy(self._player[ids])
    c_max = max(int(count.max()) if b else 0, 1)
    return Trajectories(
        info, hist, legal, player, torch.from_numpy(np.ascontiguousarray(action[:t_max].T)),
        behaviour, torch.from_numpy(valid), torch.from_numpy(length),
        torch.from_numpy(self._return_rows[self._return_id[final]]),
        torch.from_numpy(np.ascontiguousarray(chance[:, :c_max])),
        lambda: torch.from_numpy(np.where(valid, ids, -1)))
