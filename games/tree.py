"""Compiled game trees for small games: tensor sampling and exact policy evaluation.

`compile_tree(game_string)` walks the OpenSpiel tree once (breadth first, so node ids are
sorted by depth) and stores it as tensors: node kind, acting player, information-state id
(row of `games.infostate_table`), legal mask, children, chance outcomes and probabilities,
terminal returns, each player's information-state tensor ("views", from which the history
encoding is gathered), depth and parent.

On the compiled tree:
- `TreeSampler` plays B episodes in lockstep with tensor gathers only (no pyspiel calls);
- `GameTree.expected_returns`, `best_response_values`, `nash_conv` and `exploitability`
  evaluate a tabular policy (S, A) exactly, level by level, in float64;
- `GameTree.best_response_cfv` gives each player's best response to a profile and the
  counterfactual values of every player's own information states against the others' best
  responses (the utilities of CFR-BR, Johanson et al. 2012).
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import numpy as np
import pyspiel
import torch

from games.infostates import infostate_table
from games.sampler import (PolicyFn, Sampler, StepBatch, TablePolicy, Trajectories,
                           sample_actions)
from games.spiel import GameError, SpielGame, load_game

# Node counts: kuhn_poker 58, leduc_poker 9457, liars_dice(numdice=1) 294883,
# universal_poker (default) about 1.1e6, leduc_poker(players=3) 1831601.
DEFAULT_MAX_NODES = 500_000

CHANCE, DECISION, TERMINAL = 0, 1, 2


@contextlib.contextmanager
def _one_thread():
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


class GameTree:
  """A game tree stored as tensors; node 0 is the root, ids are in breadth-first order."""

  def __init__(self, game_string: str, kind, player, infostate, legal_mask, children,
               chance_outcome, chance_prob, returns, view, view_tensors, depth, parent,
               parent_slot):
    sgame = load_game(game_string)
    table = infostate_table(game_string)
    self.game_string = game_string
    self.sgame = sgame
    self.num_players = sgame.num_players
    self.num_actions = sgame.num_actions
    self.kind = kind                      # (M,) long: CHANCE, DECISION or TERMINAL
    self.player = player                  # (M,) long: acting player, -1 if not a decision
    self.infostate = infostate            # (M,) long: infostate_table row, -1 if none
    self.legal_mask = legal_mask          # (M, A) bool
    self.children = children              # (M, W) long: by action (decision) or slot, -1
    self.chance_outcome = chance_outcome  # (M, W) long: chance outcome ids by slot, -1
    self.chance_prob = chance_prob        # (M, W) float64: chance probabilities by slot
    self.returns = returns                # (M, N) float64: terminal returns, 0 elsewhere
    self.view = view                      # (M, N) long: row of view_tensors per player
    self.view_tensors = view_tensors      # (V, D) float32: information-state tensors
    self.depth = depth                    # (M,) long
    self.parent = parent                  # (M,) long, -1 at the root
    self.parent_slot = parent_slot        # (M,) long: column of this node in children[parent]
    self.info_tensors = table.tensors     # (S, D) float32
    self.info_legal = table.legal_mask    # (S, A) bool
    self.info_player = table.player       # (S,) long
    self.info_keys = table.keys
    self.num_infostates = len(table)
    m = kind.shape[0]
    self.num_nodes = m
    bounds = torch.searchsorted(depth, torch.arange(int(depth[-1]) + 2))
    self._depth_bounds = bounds.tolist()  # nodes at depth d: [bounds[d], bounds[d+1])
    self._terminals = torch.nonzero(kind == TERMINAL).squeeze(1)
    # Padded lookups: index -1 (no child, no infostate) maps onto a zero row at the end.
    self._children_ext = torch.where(children >= 0, children, m)
    self._info_ext = torch.cat([self.info_tensors, torch.zeros(1, self.info_tensors.shape[1])])
    self._infostate_ext = torch.where(infostate >= 0, infostate, self.num_infostates)
    self._is_chance = kind == CHANCE
    self._is_decision = kind == DECISION
    owner = torch.full((m,), self.num_players, dtype=torch.long)  # parent's player; N = chance
    pp = player[parent.clamp_min(0)]
    owner = torch.where((parent >= 0) & (pp >= 0), pp, owner)
    self._edge_owner = owner
    pc = parent.clamp_min(0)
    self._edge_chance_prob = torch.where(
        (parent >= 0) & (kind[pc] == CHANCE), chance_prob[pc, parent_slot.clamp_min(0)],
        torch.zeros((), dtype=torch.float64))
    self._br_levels: dict[int, _BRLevels] = {}
    with _one_thread():
      for i in range(self.num_players):
        self._levels(i)

  def __repr__(self) -> str:
    return (f"GameTree({self.game_string!r}, nodes={self.num_nodes}, "
            f"infostates={self.num_infostates})")

  # Encodings.
  @functools.cached_property
  def history(self) -> torch.Tensor:
    """(M, N*D) float32: every player's information-state tensor at each node."""
    return self.view_tensors[self.view].flatten(1)

  @functools.cached_property
  def _history_ext(self) -> torch.Tensor:
    return torch.cat([self.history, torch.zeros(1, self.history.shape[1])])

  @functools.cached_property
  def _node_info_ext(self) -> torch.Tensor:
    return torch.cat([self._info_ext[self._infostate_ext], self._info_ext[-1:]])

  @functools.cached_property
  def _legal_ext(self) -> torch.Tensor:
    return torch.cat([self.legal_mask, torch.zeros(1, self.num_actions, dtype=torch.bool)])

  @functools.cached_property
  def _player_ext(self) -> torch.Tensor:
    return torch.cat([self.player, torch.full((1,), -1, dtype=torch.long)])
  history_ext = functools.cached_property(lambda self: self._history_ext)
  node_info_ext = functools.cached_property(lambda self: self._node_info_ext)
  legal_ext = functools.cached_property(lambda self: self._legal_ext)
  info_ext = functools.cached_property(lambda self: self._info_ext)

  def _gather_rows(self, table: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    ids = torch.where(nodes >= 0, nodes, self.num_nodes).reshape(-1)
    return torch.index_select(table, 0, ids).view(*nodes.shape, table.shape[1])

  def history_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., N*D) float32 history encodings of node ids (-1 gives zeros)."""
    return self._gather_rows(self._history_ext, nodes)

  def info_state_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., D) float32 acting player's information-state tensors (-1 or no decision: 0)."""
    return self._gather_rows(self._node_info_ext, nodes)

  # Policies.
  def tabulate(self, policy_fn: PolicyFn, device=None) -> torch.Tensor:
    """(S, A) float64 CPU probabilities of a batched policy at every information state."""
    batch = StepBatch(self.info_tensors, self.info_legal, self.info_player,
                      torch.arange(self.num_infostates), 0)
    if device is not None:
      batch = StepBatch(*[x.to(device) for x in batch[:4]], 0)
    with torch.no_grad(), _one_thread():
      probs = policy_fn(batch)
    return probs.detach().to("cpu", torch.float64)

  def uniform_policy(self) -> torch.Tensor:
    """(S, A) float64 uniform policy over the legal actions."""
    m = self.info_legal.double()
    return m / m.sum(1, keepdim=True)

  def to_pyspiel_policy(self, probs: torch.Tensor) -> pyspiel.TabularPolicy:
    """pyspiel.TabularPolicy with the legal-action probabilities of `probs` (S, A)."""
    p = probs.detach().to("cpu", torch.float64).numpy()
    legal = self.info_legal.numpy()
    return pyspiel.TabularPolicy({
        k: [(int(a), float(p[s, a])) for a in np.flatnonzero(legal[s])]
        for s, k in enumerate(self.info_keys)})

  # Exact evaluation.
  def _node_weights(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, W) float64: chance probabilities or policy probabilities per child column."""
    p = probs.detach().to("cpu", torch.float64) * self.info_legal
    w = self.chance_prob.shape[1]
    p_ext = torch.zeros(self.num_infostates + 1, w, dtype=torch.float64)
    p_ext[:-1, :p.shape[1]] = p
    return torch.where(self._is_chance[:, None], self.chance_prob, p_ext[self._infostate_ext])

  def reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) float64 reach probability of every node contributed by each player and by
    chance (last column) when every player follows `probs` (S, A)."""
    with _one_thread():
      return self._reach(probs)

  def _reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) float64 reach probability contributed by each player and chance (last)."""
    p = probs.detach().to("cpu", torch.float64) * self.info_legal
    pa = self.parent.clamp_min(0)
    pol = p[self._infostate_ext[pa].clamp_max(self.num_infostates - 1),
            self.parent_slot.clamp_min(0).clamp_max(p.shape[1] - 1)]
    edge = torch.where(self._edge_owner == self.num_players, self._edge_chance_prob, pol)
    f = torch.ones(self.num_nodes, self.num_players + 1, dtype=torch.float64)
    f.scatter_(1, self._edge_owner[:, None], edge[:, None])
    f[0] = 1.0
    r = f
    b = self._depth_bounds
    for d in range(1, len(b) - 1):
      r[b[d]:b[d + 1]] *= r[self.parent[b[d]:b[d + 1]]]
    return r

  def expected_returns(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64 expected returns when every player follows `probs` (S, A)."""
    with _one_thread():
      return self._expected_returns(probs)

  def _expected_returns(self, probs: torch.Tensor, reach=None) -> torch.Tensor:
    reach = (self._reach(probs) if reach is None else reach).prod(1)
    z = self._terminals
    return (reach[z, None] * self.returns[z]).sum(0)

  def _levels(self, i: int) -> _BRLevels:
    """Groups nodes so that each group's children and co-infoset nodes come earlier."""
    if i in self._br_levels:
      return self._br_levels[i]
    m, s = self.num_nodes, self.num_infostates
    own = self._is_decision & (self.player == i)
    term = self.kind == TERMINAL
    e = torch.zeros(m + 1, dtype=torch.long)
    own_ids = torch.nonzero(own).squeeze(1)
    for _ in range(m + 1):
      ce = e[self._children_ext].max(1).values + 1
      big = torch.zeros(s, dtype=torch.long).scatter_reduce(
          0, self.infostate[own_ids], ce[own_ids], "amax")
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
    with _one_thread():
      return self._best_response_values(probs)

  def _best_response_values(self, probs: torch.Tensor, reach=None,
                            br: torch.Tensor | None = None) -> torch.Tensor:
    """Best-response values; writes each player's one-hot best response into `br` (S, A)."""
    w = self._node_weights(probs)
    reach = self._reach(probs) if reach is None else reach
    n, a_dim, s = self.num_players, self.num_actions, self.num_infostates
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
      opp = torch.cat([reach[:, :i], reach[:, i + 1:]], 1).prod(1)
      v = torch.zeros(self.num_nodes + 1, dtype=torch.float64)
      v[:-1] = self.returns[:, i]
      lv = self._levels(i)
      cfv = torch.zeros(s, a_dim, dtype=torch.float64)
      neg = torch.full((), -torch.inf, dtype=torch.float64)
      for own, other in zip(lv.own, lv.other):
        if other.numel():
          v[other] = (w[other] * v[self._children_ext[other]]).sum(1)
        if own.numel():
          q = v[self._children_ext[own, :a_dim]]
          inf = self.infostate[own]
          cfv.index_fill_(0, inf, 0.0)
          cfv.index_add_(0, inf, opp[own, None] * q)
          best = torch.where(self.info_legal[inf], cfv[inf], neg).argmax(1)
          v[own] = q.gather(1, best[:, None]).squeeze(1)
          if br is not None:
            br[inf] = 0.0
            br[inf, best] = 1.0
      out[i] = v[0]
    return out

  def action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    """(M, A) float64 expected return of `player` after each action at every decision node
    when everyone follows `probs` (S, A) afterwards; 0 at illegal actions."""
    with _one_thread():
      return self._action_values(probs, player)

  def _action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    w = self._node_weights(probs)
    a_dim = self.num_actions
    v = torch.zeros(self.num_nodes + 1, dtype=torch.float64)  # index M: missing child, 0
    q = torch.zeros(self.num_nodes, a_dim, dtype=torch.float64)
    b = self._depth_bounds
    term = self.kind == TERMINAL
    v[:-1] = torch.where(term, self.returns[:, player], 0.0)
    for d in range(len(b) - 3, -1, -1):  # the deepest level holds terminals only
      lo, hi = b[d], b[d + 1]
      ch = v[self._children_ext[lo:hi]]
      q[lo:hi] = torch.where(self._is_decision[lo:hi, None], ch[:, :a_dim], 0.0)
      v[lo:hi] = torch.where(term[lo:hi], v[lo:hi], (w[lo:hi] * ch).sum(1))
    return q

  def best_response_cfv(self, probs: torch.Tensor) -> BestResponseCFV:
    """Best responses to `probs` and the counterfactual values against them (see
    BestResponseCFV); exact, in batched tensor passes over the tree's levels."""
    with _one_thread():
      probs = probs.detach().to("cpu", torch.float64) * self.info_legal
      reach = self._reach(probs)
      br = torch.zeros_like(probs)
      br_values = self._best_response_values(probs, reach, br)
      values = self._expected_returns(probs, reach)
      n, s = self.num_players, self.num_infostates
      dec = torch.nonzero(self._is_decision).squeeze(1)
      inf, who = self.infostate[dec], self.player[dec]
      own_reach = torch.zeros(s, dtype=torch.float64)
      own_reach[inf] = reach[dec, who]
      cfv = torch.zeros_like(probs)
      for p in range(n):
        mine = (self.info_player == p)[:, None]
        profile = torch.where(mine, probs, br)  # p plays probs, the others best-respond
        q = self._action_values(profile, p)
        r = self._reach(profile)
        cf = torch.cat([r[:, :p], r[:, p + 1:]], 1).prod(1)  # opponents' and chance's reach
        sel = who == p
        cfv.index_add_(0, inf[sel], cf[dec[sel], None] * q[dec[sel]])
      return BestResponseCFV(br, cfv, own_reach, br_values, values)

  def nash_conv(self, probs: torch.Tensor) -> float:
    """Sum over players of best-response value minus on-policy value."""
    with _one_thread():
      reach = self._reach(probs)
      gain = (self._best_response_values(probs, reach) -
              self._expected_returns(probs, reach))
    return float(gain.sum())

  def exploitability(self, probs: torch.Tensor) -> float:
    """nash_conv / 2; two-player zero-sum games only."""
    self.sgame.require_two_player_zero_sum("exploitability")
    return self.nash_conv(probs) / self.num_players


def _build(sgame: SpielGame, max_nodes: int) -> GameTree:
  game_string = sgame.game_string
  table = infostate_table(game_string)
  index = table.index
  n, a_dim, d = sgame.num_players, sgame.num_actions, sgame.info_state_size
  width = max(a_dim, sgame.game.max_chance_outcomes())
  kind, player, infostate, depth, parent, slot = [], [], [], [], [], []
  legal_rows, child_rows, returns_rows, view_rows = [], [], [], []
  outcome_rows, prob_rows = [], []
  # (player, information-state string) -> view row; decision infostates come first.
  view_index = {(int(p), k): s for s, (p, k) in enumerate(zip(table.player, table.keys))}
  view_tensors = [table.tensors]
  extra_views = []
  frontier = [(sgame.new_initial_state(), -1, -1)]
  level = 0
  next_id = 1
  while frontier:
    nxt = []
    for state, par, sl in frontier:
      kind_i = TERMINAL if state.is_terminal() else (
          CHANCE if state.is_chance_node() else DECISION)
      kind.append(kind_i)
      depth.append(level)
      parent.append(par)
      slot.append(sl)
      views = []
      for p in range(n):
        key = (p, state.information_state_string(p))
        vid = view_index.get(key)
        if vid is None:
          vid = view_index[key] = len(view_index)
          extra_views.append(state.information_state_tensor(p))
        views.append(vid)
      view_rows.append(views)
      children = np.full(width, -1, dtype=np.int64)
      outcomes = np.full(width, -1, dtype=np.int64)
      probs = np.zeros(width)
      legal = np.zeros(a_dim, dtype=bool)
      me = len(kind) - 1
      if kind_i == DECISION:
        p = state.current_player()
        player.append(p)
        key = state.information_state_string(p)
        if key not in index:
          raise GameError(f"game {game_string!r}: information state {key!r} is missing "
                          "from the information-state table.")
        infostate.append(index[key])
        for a in state.legal_actions():
          legal[a] = True
          children[a] = next_id
          next_id += 1
          nxt.append((state.child(a), me, a))
        returns_rows.append(None)
      else:
        player.append(-1)
        infostate.append(-1)
        if kind_i == CHANCE:
          for k, (a, pr) in enumerate(state.chance_outcomes()):
            children[k] = next_id
            outcomes[k] = a
            probs[k] = pr
            next_id += 1
            nxt.append((state.child(a), me, k))
          returns_rows.append(None)
        else:
          returns_rows.append(state.returns())
      legal_rows.append(legal)
      child_rows.append(children)
      outcome_rows.append(outcomes)
      prob_rows.append(probs)
      if next_id > max_nodes:
        raise GameError(
            f"game {game_string!r} has more than {max_nodes} nodes; it is too big to "
            "compile into a tree. Use the pyspiel sampler (sampler='pyspiel').")
    frontier = nxt
    level += 1
  ret = np.zeros((len(kind), n))
  for i, r in enumerate(returns_rows):
    if r is not None:
      ret[i] = r
  if extra_views:
    view_tensors.append(torch.tensor(np.asarray(extra_views, dtype=np.float32).reshape(-1, d)))
  long = lambda x: torch.tensor(np.asarray(x, dtype=np.int64))
  return GameTree(
      game_string,
      kind=long(kind), player=long(player), infostate=long(infostate),
      legal_mask=torch.from_numpy(np.asarray(legal_rows, dtype=bool).reshape(-1, a_dim)),
      children=long(child_rows), chance_outcome=long(outcome_rows),
      chance_prob=torch.from_numpy(np.asarray(prob_rows, dtype=np.float64)),
      returns=torch.from_numpy(ret), view=long(view_rows),
      view_tensors=torch.cat(view_tensors), depth=long(depth), parent=long(parent),
      parent_slot=long(slot))


def exact_q(tree, probs: torch.Tensor) -> torch.Tensor:
  """(M, A) player-0 action values of every decision node under the table `probs`."""
  v = torch.zeros(tree.num_nodes, dtype=torch.float64)
  q = torch.zeros(tree.num_nodes, tree.num_actions, dtype=torch.float64)
  b = tree._depth_bounds
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


@functools.lru_cache(maxsize=8)
def compile_tree(game_string: str, max_nodes: int = DEFAULT_MAX_NODES) -> GameTree:
  """Cached compiled tree of `game_string`; raises GameError above `max_nodes` nodes."""
  return _build(load_game(game_string), max_nodes)


def _count_nodes(game: pyspiel.Game, limit: int) -> int:
  """Number of nodes, counting stops once it exceeds `limit`."""
  stack = [game.new_initial_state()]
  count = 0
  while stack:
    state = stack.pop()
    count += 1
    if count > limit:
      return count
    if state.is_terminal():
      continue
    if state.is_chance_node():
      stack.extend(state.child(a) for a, _ in state.chance_outcomes())
    else:
      stack.extend(state.child(a) for a in state.legal_actions())
  return count


def _knuth_estimate(game: pyspiel.Game, probes: int, seed: int = 0) -> float:
  """Knuth's unbiased estimate of the node count from random root-to-leaf probes."""
  rng = np.random.default_rng(seed)
  total = 0.0
  for _ in range(probes):
    state = game.new_initial_state()
    weight, est = 1.0, 1.0
    while not state.is_terminal():
      actions = ([a for a, _ in state.chance_outcomes()] if state.is_chance_node()
                 else state.legal_actions())
      weight *= len(actions)
      est += weight
      state.apply_action(actions[rng.integers(len(actions))])
    total += est
  return total / probes


@functools.lru_cache(maxsize=64)
def tree_fits(game_string: str, max_nodes: int = DEFAULT_MAX_NODES) -> bool:
  """Whether the game's tree has at most `max_nodes` nodes; False for invalid games."""
  try:
    game = load_game(game_string).game
    if _knuth_estimate(game, 256) > 2 * max_nodes:  # clearly too big: skip the count
      return False
    return _count_nodes(game, max_nodes) <= max_nodes
  except (GameError, pyspiel.SpielError, RuntimeError):
    return False


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
    self._info = t._info_ext
    self._legal = torch.cat([t.info_legal, torch.zeros(1, t.num_actions, dtype=torch.bool)])
    self._history = t._history_ext
    # Most decision steps and chance outcomes on any root-to-leaf path.
    dec = np.zeros(m, dtype=np.int64)
    cha = np.zeros(m, dtype=np.int64)
    par = t.parent.numpy()
    kind = t.kind.numpy()
    b = t._depth_bounds
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
