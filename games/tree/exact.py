"""Exact evaluation of tabular policies on a compiled tree, level by level, in float64.

`Exact(tree)` holds the node groups each best responder needs and evaluates a policy
(S, A): reach probabilities, expected returns, best-response values, NashConv, action
values, and `best_response_cfv`: each player's best response to a profile and the
counterfactual values of every player's own information states against the others' best
responses (the utilities of CFR-BR, Johanson et al. 2012). `exact_q` gives player 0's
action values of every decision node.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from games.tree.arrays import CHANCE, DECISION, TERMINAL


@contextlib.contextmanager
def one_thread():
  """Runs small tensor ops on one thread: intra-op threads only add overhead at this size."""
  prev = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    yield
  finally:
    torch.set_num_threads(prev)


class _BRLevels(NamedTuple):
  """Node groups for one best responder, ordered so that children come first."""
  own: list[torch.Tensor]     # per level: the responder's decision nodes
  other: list[torch.Tensor]   # per level: chance and opponent nodes


class BestResponseCFV(NamedTuple):
  """A profile pi (S, A) against best responders, on every information state s of player p.

  br[s]: p's pure best response to the others' pi (one-hot). cfv[s, a]: p's counterfactual
  value of a at s (opponents' and chance's reach times p's expected return) when p follows pi
  elsewhere and every other player plays its best response br. own_reach[s]: p's own reach of
  s under pi. br_values / values: (N,) best-response values and pi's expected returns."""
  br: torch.Tensor           # (S, A) float64
  cfv: torch.Tensor          # (S, A) float64
  own_reach: torch.Tensor    # (S,) float64
  br_values: torch.Tensor    # (N,) float64
  values: torch.Tensor       # (N,) float64


class Exact:
  """Exact evaluator of tabular policies (S, A) on a compiled GameTree."""

  def __init__(self, tree):
    self.tree = t = tree
    m = t.num_nodes
    self._terminals = torch.nonzero(t.kind == TERMINAL).squeeze(1)
    # Padded lookups: index -1 (no child, no infostate) maps onto a zero row at the end.
    self._children_ext = torch.where(t.children >= 0, t.children, m)
    self._infostate_ext = torch.where(t.infostate >= 0, t.infostate, t.num_infostates)
    self._is_chance = t.kind == CHANCE
    self._is_decision = t.kind == DECISION
    owner = torch.full((m,), t.num_players, dtype=torch.long)  # parent's player; N = chance
    pp = t.player[t.parent.clamp_min(0)]
    owner = torch.where((t.parent >= 0) & (pp >= 0), pp, owner)
    self._edge_owner = owner
    pc = t.parent.clamp_min(0)
    self._edge_chance_prob = torch.where(
        (t.parent >= 0) & (t.kind[pc] == CHANCE), t.chance_prob[pc, t.parent_slot.clamp_min(0)],
        torch.zeros((), dtype=torch.float64))
    self._br_levels: dict[int, _BRLevels] = {}
    with one_thread():
      for i in range(t.num_players):
        self._levels(i)

  def _node_weights(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, W) float64: chance probabilities or policy probabilities per child column."""
    t = self.tree
    p = probs.detach().to("cpu", torch.float64) * t.info_legal
    w = t.chance_prob.shape[1]
    p_ext = torch.zeros(t.num_infostates + 1, w, dtype=torch.float64)
    p_ext[:-1, :p.shape[1]] = p
    return torch.where(self._is_chance[:, None], t.chance_prob, p_ext[self._infostate_ext])

  def reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) float64 reach probability of every node contributed by each player and by
    chance (last column) when every player follows `probs` (S, A)."""
    with one_thread():
      return self._reach(probs)

  def _reach(self, probs: torch.Tensor) -> torch.Tensor:
    t = self.tree
    p = probs.detach().to("cpu", torch.float64) * t.info_legal
    pa = t.parent.clamp_min(0)
    pol = p[self._infostate_ext[pa].clamp_max(t.num_infostates - 1),
            t.parent_slot.clamp_min(0).clamp_max(p.shape[1] - 1)]
    edge = torch.where(self._edge_owner == t.num_players, self._edge_chance_prob, pol)
    f = torch.ones(t.num_nodes, t.num_players + 1, dtype=torch.float64)
    f.scatter_(1, self._edge_owner[:, None], edge[:, None])
    f[0] = 1.0
    r = f
    b = t.depth_bounds
    for d in range(1, len(b) - 1):
      r[b[d]:b[d + 1]] *= r[t.parent[b[d]:b[d + 1]]]
    return r

  def expected_returns(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64 expected returns when every player follows `probs` (S, A)."""
    with one_thread():
      return self._expected_returns(probs)

  def _expected_returns(self, probs: torch.Tensor, reach=None) -> torch.Tensor:
    reach = (self._reach(probs) if reach is None else reach).prod(1)
    z = self._terminals
    return (reach[z, None] * self.tree.returns[z]).sum(0)

  def _levels(self, i: int) -> _BRLevels:
    """Groups nodes so that each group's children and co-infoset nodes come earlier."""
    if i in self._br_levels:
      return self._br_levels[i]
    t = self.tree
    m, s = t.num_nodes, t.num_infostates
    own = self._is_decision & (t.player == i)
    term = t.kind == TERMINAL
    e = torch.zeros(m + 1, dtype=torch.long)
    own_ids = torch.nonzero(own).squeeze(1)
    for _ in range(m + 1):
      ce = e[self._children_ext].max(1).values + 1
      big = torch.zeros(s, dtype=torch.long).scatter_reduce(
          0, t.infostate[own_ids], ce[own_ids], "amax")
      new = torch.where(term, 0, torch.where(own, big[self._infostate_ext.clamp_max(s - 1)], ce))
      if torch.equal(new, e[:-1]):
        break
      e[:-1] = new
    e = e[:-1]
    order = torch.argsort(e, stable=True)
    counts = torch.bincount(e).tolist()
    levels = _BRLevels([], [])
    start = counts[0]
    for c in counts[1:]:
      nodes = order[start:start + c]
      start += c
      levels.own.append(nodes[own[nodes]])
      levels.other.append(nodes[~own[nodes]])
    self._br_levels[i] = levels
    return levels

  def best_response_values(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64: each player's best-response value against the others' `probs`."""
    with one_thread():
      return self._best_response_values(probs)

  def _best_response_values(self, probs: torch.Tensor, reach=None,
                            br: torch.Tensor | None = None) -> torch.Tensor:
    """Best-response values; writes each player's one-hot best response into `br` (S, A)."""
    t = self.tree
    w = self._node_weights(probs)
    reach = self._reach(probs) if reach is None else reach
    n, a_dim, s = t.num_players, t.num_actions, t.num_infostates
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
      opp = torch.cat([reach[:, :i], reach[:, i + 1:]], 1).prod(1)
      v = torch.zeros(t.num_nodes + 1, dtype=torch.float64)
      v[:-1] = t.returns[:, i]
      lv = self._levels(i)
      cfv = torch.zeros(s, a_dim, dtype=torch.float64)
      neg = torch.full((), -torch.inf, dtype=torch.float64)
      for own, other in zip(lv.own, lv.other):
        if other.numel():
          v[other] = (w[other] * v[self._children_ext[other]]).sum(1)
        if own.numel():
          q = v[self._children_ext[own, :a_dim]]
          inf = t.infostate[own]
          cfv.index_fill_(0, inf, 0.0)
          cfv.index_add_(0, inf, opp[own, None] * q)
          best = torch.where(t.info_legal[inf], cfv[inf], neg).argmax(1)
          v[own] = q.gather(1, best[:, None]).squeeze(1)
          if br is not None:
            br[inf] = 0.0
            br[inf, best] = 1.0
      out[i] = v[0]
    return out

  def action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    """(M, A) float64 expected return of `player` after each action at every decision node
    when everyone follows `probs` (S, A) afterwards; 0 at illegal actions."""
    with one_thread():
      return self._action_values(probs, player)

  def _action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    t = self.tree
    w = self._node_weights(probs)
    a_dim = t.num_actions
    v = torch.zeros(t.num_nodes + 1, dtype=torch.float64)  # index M: missing child, 0
    q = torch.zeros(t.num_nodes, a_dim, dtype=torch.float64)
    b = t.depth_bounds
    term = t.kind == TERMINAL
    v[:-1] = torch.where(term, t.returns[:, player], 0.0)
    for d in range(len(b) - 3, -1, -1):  # the deepest level holds terminals only
      lo, hi = b[d], b[d + 1]
      ch = v[self._children_ext[lo:hi]]
      q[lo:hi] = torch.where(self._is_decision[lo:hi, None], ch[:, :a_dim], 0.0)
      v[lo:hi] = torch.where(term[lo:hi], v[lo:hi], (w[lo:hi] * ch).sum(1))
    return q

  def best_response_cfv(self, probs: torch.Tensor) -> BestResponseCFV:
    """Best responses to `probs` and the counterfactual values against them (see
    BestResponseCFV); exact, in batched tensor passes over the tree's levels."""
    t = self.tree
    with one_thread():
      probs = probs.detach().to("cpu", torch.float64) * t.info_legal
      reach = self._reach(probs)
      br = torch.zeros_like(probs)
      br_values = self._best_response_values(probs, reach, br)
      values = self._expected_returns(probs, reach)
      n, s = t.num_players, t.num_infostates
      dec = torch.nonzero(self._is_decision).squeeze(1)
      inf, who = t.infostate[dec], t.player[dec]
      own_reach = torch.zeros(s, dtype=torch.float64)
      own_reach[inf] = reach[dec, who]
      cfv = torch.zeros_like(probs)
      for p in range(n):
        mine = (t.info_player == p)[:, None]
        profile = torch.where(mine, probs, br)  # p plays probs, the others best-respond
        q = self._action_values(profile, p)
        r = self._reach(profile)
        cf = torch.cat([r[:, :p], r[:, p + 1:]], 1).prod(1)  # opponents' and chance's reach
        sel = who == p
        cfv.index_add_(0, inf[sel], cf[dec[sel], None] * q[dec[sel]])
      return BestResponseCFV(br, cfv, own_reach, br_values, values)

  def nash_conv(self, probs: torch.Tensor) -> float:
    """Sum over players of best-response value minus on-policy value."""
    with one_thread():
      reach = self._reach(probs)
      gain = (self._best_response_values(probs, reach) -
              self._expected_returns(probs, reach))
    return float(gain.sum())


def exact_q(tree, probs: torch.Tensor) -> torch.Tensor:
  """(M, A) player-0 action values of every decision node under the table `probs`."""
  v = torch.zeros(tree.num_nodes, dtype=torch.float64)
  q = torch.zeros(tree.num_nodes, tree.num_actions, dtype=torch.float64)
  b = tree.depth_bounds
  zero = torch.zeros((), dtype=torch.float64)
  for d in range(len(b) - 2, -1, -1):  # children are one level deeper
    nodes = torch.arange(b[d], b[d + 1])
    kind = tree.kind[nodes]
    term = nodes[kind == TERMINAL]
    v[term] = tree.returns[term, 0]
    ch = nodes[kind == CHANCE]
    if len(ch):
      c = tree.children[ch]
      v[ch] = (tree.chance_prob[ch] * torch.where(c >= 0, v[c.clamp_min(0)], zero)).sum(1)
    dn = nodes[kind == DECISION]
    if len(dn):
      c = tree.children[dn][:, :tree.num_actions]
      q[dn] = torch.where(c >= 0, v[c.clamp_min(0)], zero)
      v[dn] = (probs[tree.infostate[dn]] * q[dn]).sum(1)
  return q
