"""Exact evaluation of tabular policies on a compiled tree, in float64, on CPU or CUDA.

`Exact(arrays, device)` evaluates one policy (S, A) or K policies (K, S, A) at once, in
passes over groups of nodes whose total cost is linear in the nodes (each node is gathered
once per pass; K policies share the index work):
- reach: top down over the depths, each player's and chance's reach of every node;
- expected returns: reach times terminal returns;
- best responses: bottom up over `best_response_order`: for each responder, groups ordered
  so that a group's children and the other nodes of its information states come earlier
  (Kahn's topological order of the tree with each of the responder's information states
  merged into one vertex);
- action values: bottom up over the depths;
- `best_response_cfv`: each player's best response to a profile and the counterfactual
  values of every player's own information states against the others' best responses
  (the utilities of CFR-BR, Johanson et al. 2012).

A node's value sums its children's weighted values in the floating-point order of
torch.sum over a dense row of W columns (children by action or chance slot), so that the
results do not depend on K or on how nodes are grouped (CPU passes run on one thread,
`one_thread`, so no reduction is split): children in
the first SEQUENTIAL_COLUMNS columns are summed by index_add in column order (torch's CPU
sum adds such a row left to right: tests/test_tree_scale.py checks it); wider rows are
summed as dense rows by torch.sum. On CUDA the order of index_add is not fixed: results
agree to rounding.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import torch

from games.tree.arrays import DECISION, TreeArrays

SEQUENTIAL_COLUMNS = 4
# Working memory of one pass over K policies: more policies are evaluated in chunks that
# fit it. Small trees share one pass (their cost is per-op overhead); on large trees the
# passes are memory-bound and one policy per pass is as fast.
DEFAULT_WORK_BYTES = 32 << 20


@contextlib.contextmanager
def one_thread():
  """Runs tensor ops on one CPU thread: reductions keep one order, whatever the machine."""
  prev = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    yield
  finally:
    torch.set_num_threads(prev)


class BestResponseCFV(NamedTuple):
  """A profile pi (S, A) against best responders, on every information state s of player p.

  br[s]: p's pure best response to the others' pi (one-hot). cfv[s, a]: p's counterfactual
  value of a at s (opponents' and chance's reach times p's expected return) when p follows pi
  elsewhere and every other player plays its best response br. own_reach[s]: p's own reach of
  s under pi. br_values / values: (N,) best-response values and pi's expected returns. For
  K profiles (K, S, A) every field has a leading K."""
  br: torch.Tensor           # (S, A) float64
  cfv: torch.Tensor          # (S, A) float64
  own_reach: torch.Tensor    # (S,) float64
  br_values: torch.Tensor    # (N,) float64
  values: torch.Tensor       # (N,) float64


class Evaluation(NamedTuple):
  """K policies evaluated exactly (CPU float64)."""
  values: torch.Tensor       # (K, N) expected returns
  br_values: torch.Tensor    # (K, N) each player's best-response value to the others
  own_reach: torch.Tensor    # (K, S) the acting player's own reach of each information state

  @property
  def nash_conv(self) -> torch.Tensor:
    """(K,) sum over players of best-response value minus on-policy value."""
    return (self.br_values - self.values).sum(-1)


class _Rows(NamedTuple):
  """Children summed onto their parents `nodes`: those of parents whose children all sit in
  the first SEQUENTIAL_COLUMNS columns by index_add, the others as dense W-wide rows."""
  nodes: torch.Tensor        # (P,) parent ids
  child: torch.Tensor        # children summed by index_add (parent, then column order)
  local: torch.Tensor        # their parent's row in `nodes`
  dense_rows: torch.Tensor   # rows of `nodes` summed as dense rows
  dense_child: torch.Tensor
  dense_flat: torch.Tensor   # their position row * W + column among the dense rows


class _Own(NamedTuple):
  """The responder's decision nodes of one group, and their children by action."""
  nodes: torch.Tensor
  infostate: torch.Tensor
  child: torch.Tensor
  q_flat: torch.Tensor       # row * A + action of each child
  legal: torch.Tensor        # (nodes, A) bool


class _Depth(NamedTuple):
  """One depth's non-terminal nodes, and the action-value rows of its decision nodes."""
  rows: _Rows
  q_child: torch.Tensor      # children of the depth's decision nodes
  q_flat: torch.Tensor       # their parent's row among all decisions * A + action


def _long(x: np.ndarray, device) -> torch.Tensor:
  """An int64 index tensor: for index_add_ (far slower with int32) and index_copy_."""
  return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(device)


def _gather_index(x: np.ndarray, device) -> torch.Tensor:
  """An index tensor for index_select: int32 when it fits (as fast, half the memory)."""
  t = np.int32 if x.size == 0 or int(x.max()) < 2**31 - 1 else np.int64
  return torch.from_numpy(np.ascontiguousarray(x, dtype=t)).to(device)


def _others(r: torch.Tensor, i: int) -> torch.Tensor:
  """(M, K) product of the reach columns (M, K, N+1) of everyone but player i (chance
  included), multiplied left to right as torch.prod does."""
  if r.shape[-1] == 3:
    return r[..., 1 - i] * r[..., 2]
  return torch.cat([r[..., :i], r[..., i + 1:]], -1).prod(-1)


class Exact:
  """Exact evaluator of tabular policies on one compiled tree (see the module docstring)."""

  def __init__(self, arrays: TreeArrays, device="cpu",
               work_bytes: int = DEFAULT_WORK_BYTES):
    self.arrays = a = arrays
    self.device = dev = torch.device(device)
    self.work_bytes = work_bytes
    m, n, s, a_dim = a.num_nodes, a.num_players, a.num_infostates, a.num_actions
    self.num_players, self.num_actions, self.num_infostates = n, a_dim, s
    self.width = a.width
    self.bounds = a.depth_bounds
    parent, first, nc, col = a.parent, a.first_child, a.num_children, a.column
    self._nc = torch.from_numpy(nc).to(dev)  # narrow; widened per depth
    kind, player = a.kind, a.player
    # Per edge (child): who moves into it (N: chance), the policy entry or chance probability.
    par = np.maximum(parent, 0)
    pp = player[par].astype(np.int64)
    owner = np.where((parent >= 0) & (pp >= 0), pp, n)
    self._owner = torch.from_numpy(owner.astype(np.int8)).to(dev)  # widened per depth
    # Row of each edge's weight in [policy table (S*A rows); chance probabilities (P rows)].
    pinf = np.where(owner < n, a.infostate[par], 0).astype(np.int64)
    self._edge_index = _gather_index(np.where(
        owner < n, pinf * a_dim + np.maximum(col, 0),
        s * a_dim + a.edge_prob_id.astype(np.int64)), dev)
    self._chance_probs = torch.from_numpy(a.edge_probs).to(dev)
    term = np.flatnonzero(nc == 0)
    self._terminals = _long(term, dev)
    self._terminal_returns = torch.from_numpy(a.return_values[a.return_id[term]]).to(dev)
    self._legal = torch.from_numpy(a.info_legal).to(dev)
    dec = np.flatnonzero(kind == DECISION)
    self._decisions = _long(dec, dev)
    dec_inf = a.infostate[dec].astype(np.int64)
    self._dec_infostate = _long(dec_inf, dev)
    self._dec_player = _long(player[dec], dev)
    # Per player: the rows (among decisions) of its decision nodes, and their states.
    self._dec_of = [(_long(np.flatnonzero(player[dec] == i), dev),
                     _long(dec[player[dec] == i], dev), _long(dec_inf[player[dec] == i], dev))
                    for i in range(n)]
    self._info_player = torch.from_numpy(a.info_player.astype(np.int64)).to(dev)
    # Parents whose children all lie in the first SEQUENTIAL_COLUMNS columns.
    has = np.flatnonzero(nc > 0)
    self._simple = np.zeros(m, dtype=bool)
    if has.size:
      self._simple[has] = np.maximum.reduceat(col[1:], first[has] - 1) < SEQUENTIAL_COLUMNS
    dec_row = np.full(m, -1, dtype=np.int64)
    dec_row[dec] = np.arange(len(dec))
    self._depths = []
    b = self.bounds
    for d in range(len(b) - 1):
      nodes = np.arange(b[d], b[d + 1])
      nodes = nodes[nc[nodes] > 0]
      if not nodes.size:
        self._depths.append(None)
        continue
      child, local = self._children(nodes)
      isdec = kind[nodes[local]] == DECISION
      self._depths.append(_Depth(self._rows(nodes, child, local),
                                 _gather_index(child[isdec], dev),
                                 _long(dec_row[nodes[local[isdec]]] * a_dim +
                                       col[child[isdec]], dev)))
    self._br: dict[int, list[tuple[_Rows, _Own]]] = {}

  # Groups of nodes.
  def _children(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Children of `nodes` (parent order, then column order) and their parent's row."""
    cnt = self.arrays.num_children[nodes].astype(np.int64)
    local = np.repeat(np.arange(len(nodes)), cnt)
    start = np.cumsum(cnt) - cnt
    child = self.arrays.first_child[nodes][local] + (np.arange(len(local)) - start[local])
    return child, local

  def _rows(self, nodes: np.ndarray, child: np.ndarray, local: np.ndarray) -> _Rows:
    dev = self.device
    simple = self._simple[nodes]
    sc = simple[local]
    dense = np.flatnonzero(~simple)
    dense_local = (np.cumsum(~simple) - 1)[local[~sc]]
    flat = dense_local * self.width + self.arrays.column[child[~sc]]
    return _Rows(_long(nodes, dev), _gather_index(child[sc], dev), _long(local[sc], dev),
                 _long(dense, dev), _gather_index(child[~sc], dev), _long(flat, dev))

  def best_response_order(self, player: int) -> np.ndarray:
    """(M,) group of every node for `player`'s best response: terminals 0, a node one more
    than its children, all the player's nodes of one information state the same group."""
    a = self.arrays
    m, s = a.num_nodes, a.num_infostates
    parent = a.parent
    own_ids = np.flatnonzero(a.player == player)
    vert = np.arange(m)
    vert[own_ids] = m + a.infostate[own_ids].astype(np.int64)
    pending = np.bincount(vert[parent[1:]], minlength=m + s)
    members = own_ids[np.argsort(a.infostate[own_ids], kind="stable")]
    starts = np.searchsorted(a.infostate[members], np.arange(s + 1))
    level = np.full(m, -1, dtype=np.int64)
    frontier = np.flatnonzero(a.num_children == 0)
    level[frontier] = 0
    slot = np.zeros(m + s, dtype=np.int64)  # scratch: deduplicates the ready vertices
    h = 0
    while True:
      pv = vert[parent[frontier[frontier > 0]]]
      if not pv.size:
        break
      np.subtract.at(pending, pv, 1)
      ready = pv[pending[pv] == 0]
      slot[ready] = np.arange(len(ready))
      ready = ready[slot[ready] == np.arange(len(ready))]  # each vertex once
      nodes, sets = ready[ready < m], ready[ready >= m] - m
      if sets.size:
        lens = starts[sets + 1] - starts[sets]
        off = np.repeat(starts[sets] - (np.cumsum(lens) - lens), lens)
        nodes = np.concatenate([nodes, members[off + np.arange(len(off))]])
      h += 1
      level[nodes] = h
      frontier = nodes
    if (level < 0).any():
      raise ValueError(f"{a.game_string!r}: player {player}'s information states form a "
                       "cycle (imperfect recall); no exact best response on this tree")
    return level

  def _br_groups(self, player: int) -> list[tuple[_Rows, _Own]]:
    if player in self._br:
      return self._br[player]
    a, dev = self.arrays, self.device
    level = self.best_response_order(player)
    order = np.argsort(level, kind="stable")
    counts = np.bincount(level)
    own = a.player == player
    groups = []
    start = counts[0]
    for c in counts[1:]:
      nodes = order[start:start + c]
      start += c
      mine, other = nodes[own[nodes]], nodes[~own[nodes]]
      child, local = self._children(other)
      rows = self._rows(other, child, local)
      child, local = self._children(mine)
      inf = a.infostate[mine].astype(np.int64)
      groups.append((rows, _Own(_long(mine, dev), _long(inf, dev), _gather_index(child, dev),
                                _long(local * self.num_actions + a.column[child], dev),
                                torch.from_numpy(a.info_legal[inf]).to(dev))))
    self._br[player] = groups
    return groups

  def prepare(self) -> None:
    """Builds every player's best-response groups now rather than at the first use."""
    for i in range(self.num_players):
      self._br_groups(i)

  def nbytes(self) -> int:
    """Bytes of the index tensors held (best-response groups built so far included)."""
    seen = [self._nc, self._owner, self._edge_index, self._chance_probs, self._terminals, self._terminal_returns, self._decisions, self._dec_infostate,
            self._dec_player] + [x for d in self._dec_of for x in d]
    for g in self._depths:
      if g is not None:
        seen += list(g.rows) + [g.q_child, g.q_flat]
    for groups in self._br.values():
      for rows, own in groups:
        seen += list(rows) + list(own)
    return sum(t.numel() * t.element_size() for t in seen)

  # Passes. w (M, K) edge weights, v (M, K) node values, r (M, K, N+1) reach.
  def _zeros(self, *shape) -> torch.Tensor:
    return torch.zeros(*shape, dtype=torch.float64, device=self.device)

  def _sum(self, g: _Rows, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(P, K) each parent's sum of its children's w v, in dense-row order."""
    k = w.shape[1]
    out = self._zeros(len(g.nodes), k)
    if len(g.child):
      out.index_add_(0, g.local, w.index_select(0, g.child) * v.index_select(0, g.child))
    if len(g.dense_rows):
      n = len(g.dense_rows)
      wv = w.index_select(0, g.dense_child) * v.index_select(0, g.dense_child)
      rows = self._zeros(n * self.width, k).index_copy_(0, g.dense_flat, wv)
      out.index_copy_(0, g.dense_rows,
                      rows.view(n, self.width, k).transpose(1, 2).contiguous().sum(-1))
    return out

  def _table(self, probs: torch.Tensor) -> torch.Tensor:
    """(S, A, K) float64 legal-masked policies from (S, A) or (K, S, A)."""
    p = probs.detach().to(self.device, torch.float64)
    if p.dim() == 2:
      p = p[None]
    if p.dim() != 3 or p.shape[1:] != (self.num_infostates, self.num_actions):
      raise ValueError(f"policy shape {tuple(probs.shape)}: expected (S, A) or (K, S, A) "
                       f"with S={self.num_infostates}, A={self.num_actions}")
    return (p * self._legal).permute(1, 2, 0).contiguous()

  def _edge_weights(self, p: torch.Tensor) -> torch.Tensor:
    """(M, K): the policy's probability of each decision edge, chance's of each chance edge."""
    k = p.shape[-1]
    table = torch.cat([p.reshape(-1, k), self._chance_probs[:, None].expand(-1, k)])
    return table.index_select(0, self._edge_index)

  def _reach(self, w: torch.Tensor) -> torch.Tensor:
    """(M, K, N+1) reach of every node by each player and chance (last): a child's reach is
    its parent's, times the edge's weight in the column of who moved."""
    m, k = w.shape
    n = self.num_players
    r = torch.ones(m, k, n + 1, dtype=torch.float64, device=self.device)
    b = self.bounds
    for d in range(1, len(b) - 1):
      lo, hi, plo = b[d], b[d + 1], b[d - 1]
      lvl = r[lo:hi]
      lvl.copy_(torch.repeat_interleave(r[plo:lo], self._nc[plo:lo].long(), dim=0,
                                        output_size=hi - lo))
      own = self._owner[lo:hi].long().view(-1, 1, 1).expand(-1, k, 1)
      lvl.scatter_(2, own, lvl.gather(2, own) * w[lo:hi, :, None])
    return r

  def _expected(self, r: torch.Tensor) -> torch.Tensor:
    """(K, N) expected returns from the reach."""
    rz = r.prod(-1).index_select(0, self._terminals)
    ret = self._terminal_returns
    return torch.stack([(rz[:, k, None] * ret).sum(0) for k in range(rz.shape[1])])

  def _own_reach(self, r: torch.Tensor) -> torch.Tensor:
    """(S, K) the acting player's reach of each information state."""
    k = r.shape[1]
    rd = r.index_select(0, self._decisions)
    own = rd.gather(2, self._dec_player.view(-1, 1, 1).expand(-1, k, 1)).squeeze(2)
    # Perfect recall: the nodes of a state share one value.
    return self._zeros(self.num_infostates, k).index_copy_(0, self._dec_infostate, own)

  def _best_response(self, w: torch.Tensor, r: torch.Tensor,
                     br: torch.Tensor | None = None) -> torch.Tensor:
    """(K, N) best-response values; writes the one-hot best responses into `br` (S, A, K)."""
    m, k = w.shape
    n, s, a_dim = self.num_players, self.num_infostates, self.num_actions
    dev = self.device
    out = self._zeros(k, n)
    neg = torch.full((), -torch.inf, dtype=torch.float64, device=dev)
    ks = torch.arange(k, device=dev)
    for i in range(n):
      opp = _others(r, i)
      v = self._zeros(m, k)
      v.index_copy_(0, self._terminals,
                    self._terminal_returns[:, i, None].expand(-1, k).contiguous())
      cfv = self._zeros(s, a_dim, k)
      for rows, own in self._br_groups(i):
        if len(rows.nodes):
          v.index_copy_(0, rows.nodes, self._sum(rows, w, v))
        if len(own.nodes):
          c = len(own.nodes)
          q = self._zeros(c * a_dim, k).index_copy_(
              0, own.q_flat, v.index_select(0, own.child)).view(c, a_dim, k)
          inf = own.infostate  # each state is in one group: its cfv rows start at 0
          cfv.index_add_(0, inf, opp.index_select(0, own.nodes)[:, None, :] * q)
          best = torch.where(own.legal[:, :, None], cfv.index_select(0, inf), neg).max(1).indices
          v.index_copy_(0, own.nodes, q.gather(1, best[:, None, :]).squeeze(1))
          if br is not None:
            br.view(-1).index_fill_(0, ((inf[:, None] * a_dim + best) * k + ks).view(-1), 1.0)
      out[:, i] = v[0]
    return out

  def _action_values(self, w: torch.Tensor, player: int) -> torch.Tensor:
    """(decisions, A, K) `player`'s value after each action at every decision node."""
    m, k = w.shape
    v = self._zeros(m, k)
    v.index_copy_(0, self._terminals,
                  self._terminal_returns[:, player, None].expand(-1, k).contiguous())
    q = self._zeros(len(self._decisions) * self.num_actions, k)
    for g in reversed(self._depths):
      if g is None:
        continue
      v.index_copy_(0, g.rows.nodes, self._sum(g.rows, w, v))
      if len(g.q_child):
        q.index_copy_(0, g.q_flat, v.index_select(0, g.q_child))
    return q.view(-1, self.num_actions, k)

  # Chunks of K policies.
  def _chunks(self, probs: torch.Tensor):
    """Yields the policies as tables (S, A, K') in chunks of K that fit work_bytes."""
    k = 1 if probs.dim() == 2 else probs.shape[0]
    per = max(1, self.arrays.num_nodes * 8 * (self.num_players + 6))
    step = max(1, min(k, self.work_bytes // per))
    for lo in range(0, k, step):
      yield self._table(probs if probs.dim() == 2 else probs[lo:lo + step])

  @staticmethod
  def _single(probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x[0] if probs.dim() == 2 else x

  # Public API: one policy (S, A) or K policies (K, S, A); results on CPU, float64.
  def reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) reach of every node by each player and by chance (last column) when every
    player follows `probs` (S, A); (K, M, N+1) for K policies."""
    with one_thread():
      r = torch.cat([self._reach(self._edge_weights(p)) for p in self._chunks(probs)], 1)
      return self._single(probs, r.permute(1, 0, 2).cpu())

  def evaluate(self, probs: torch.Tensor) -> Evaluation:
    """Expected returns, best-response values and own reach of K policies (K, S, A) (or one,
    K = 1), in one set of passes per chunk of policies."""
    out = []
    with one_thread():
      for p in self._chunks(probs):
        w = self._edge_weights(p)
        r = self._reach(w)
        out.append((self._expected(r), self._best_response(w, r), self._own_reach(r).T))
    return Evaluation(*(torch.cat(x).cpu() for x in zip(*out)))

  def expected_returns(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) expected returns when every player follows `probs` (S, A); (K, N) for K."""
    with one_thread():
      v = torch.cat([self._expected(self._reach(self._edge_weights(p)))
                     for p in self._chunks(probs)])
    return self._single(probs, v.cpu())

  def best_response_values(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) each player's best-response value against the others' `probs`; (K, N) for K."""
    return self._single(probs, self.evaluate(probs).br_values)

  def nash_conv(self, probs: torch.Tensor):
    """Sum over players of best-response value minus on-policy value: a float for one
    policy (S, A), a (K,) tensor for K policies."""
    nc = self.evaluate(probs).nash_conv
    return float(nc[0]) if probs.dim() == 2 else nc

  def action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    """(M, A) expected return of `player` after each action at every decision node when
    everyone follows `probs` (S, A) afterwards; 0 at illegal actions and other nodes.
    (K, M, A) for K policies."""
    out = []
    with one_thread():
      for p in self._chunks(probs):
        q = self._action_values(self._edge_weights(p), player)
        full = torch.zeros(self.arrays.num_nodes, self.num_actions, q.shape[2],
                           dtype=torch.float64, device=self.device)
        full[self._decisions] = q
        out.append(full.permute(2, 0, 1).cpu())
    return self._single(probs, torch.cat(out))

  def best_response_cfv(self, probs: torch.Tensor) -> BestResponseCFV:
    """Best responses to `probs` and the counterfactual values against them (see
    BestResponseCFV); K profiles (K, S, A) give fields with a leading K."""
    out = []
    n = self.num_players
    with one_thread():
      for p in self._chunks(probs):
        w = self._edge_weights(p)
        r = self._reach(w)
        br = torch.zeros_like(p)
        br_values = self._best_response(w, r, br)
        values = self._expected(r)
        own_reach = self._own_reach(r)
        cfv = torch.zeros_like(p)
        for i in range(n):
          mine = (self._info_player == i)[:, None, None]
          wi = self._edge_weights(torch.where(mine, p, br))  # i plays p, the others respond
          q = self._action_values(wi, i)
          ri = self._reach(wi)
          cf = _others(ri, i)
          rows, nodes, inf = self._dec_of[i]
          cfv.index_add_(0, inf, cf.index_select(0, nodes)[:, None, :] * q.index_select(0, rows))
        out.append((br.permute(2, 0, 1), cfv.permute(2, 0, 1), own_reach.T, br_values, values))
    res = BestResponseCFV(*(torch.cat(x).cpu() for x in zip(*out)))
    return BestResponseCFV(*(x[0] for x in res)) if probs.dim() == 2 else res


def exact_q(tree, probs: torch.Tensor) -> torch.Tensor:
  """(M, A) player-0 action values of every decision node under the table `probs`."""
  return tree.action_values(probs, 0)
