"""Compiling a small game into a tree of tensors.

`compile_tree(game_string)` walks the OpenSpiel tree once (breadth first, so node ids are
sorted by depth) and stores it as a `GameTree`: node kind, acting player, information-state
id (row of `games.infostate_table`), legal mask, children, chance outcomes and probabilities,
terminal returns, each player's information-state tensor ("views", from which the history
encoding is gathered), depth and parent. The tree evaluates tabular policies exactly through
`games.tree.exact.Exact`; `tree_fits` says whether a game's tree is small enough.
"""

from __future__ import annotations

import functools

import numpy as np
import pyspiel
import torch

from games.infostates import infostate_table
from games.sampler import PolicyFn, StepBatch
from games.spiel import GameError, SpielGame, load_game
from games.tree.arrays import CHANCE, DECISION, TERMINAL
from games.tree.exact import BestResponseCFV, Exact, one_thread

# Node counts: kuhn_poker 58, leduc_poker 9457, liars_dice(numdice=1) 294883,
# universal_poker (default) about 1.1e6, leduc_poker(players=3) 1831601.
DEFAULT_MAX_NODES = 500_000


class GameTree:
  """A game tree stored as tensors; node 0 is the root, ids are in breadth-first order.

  The padded tables `info_ext` (S+1, D), `history_ext` (M+1, N*D), `node_info_ext` (M+1, D)
  and `legal_ext` (M+1, A) end with a zero row, the row of id -1 (padding)."""

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
    self.num_nodes = kind.shape[0]
    bounds = torch.searchsorted(depth, torch.arange(int(depth[-1]) + 2))
    self.depth_bounds = bounds.tolist()  # nodes at depth d: [bounds[d], bounds[d+1])
    self.exact = Exact(self)

  def __repr__(self) -> str:
    return (f"GameTree({self.game_string!r}, nodes={self.num_nodes}, "
            f"infostates={self.num_infostates})")

  # Encodings.
  @functools.cached_property
  def history(self) -> torch.Tensor:
    """(M, N*D) float32: every player's information-state tensor at each node."""
    return self.view_tensors[self.view].flatten(1)

  @functools.cached_property
  def history_ext(self) -> torch.Tensor:
    """(M+1, N*D) float32: `history` and a zero row."""
    return torch.cat([self.history, torch.zeros(1, self.history.shape[1])])

  @functools.cached_property
  def info_ext(self) -> torch.Tensor:
    """(S+1, D) float32: the information-state tensors and a zero row."""
    return torch.cat([self.info_tensors, torch.zeros(1, self.info_tensors.shape[1])])

  @functools.cached_property
  def node_info_ext(self) -> torch.Tensor:
    """(M+1, D) float32: the acting player's information-state tensor at each node (zeros
    where no player acts) and a zero row."""
    ids = torch.where(self.infostate >= 0, self.infostate, self.num_infostates)
    return torch.cat([self.info_ext[ids], self.info_ext[-1:]])

  @functools.cached_property
  def legal_ext(self) -> torch.Tensor:
    """(M+1, A) bool: `legal_mask` and a row of False."""
    return torch.cat([self.legal_mask, torch.zeros(1, self.num_actions, dtype=torch.bool)])

  # The private names armac_spiel/armac.py reads until it reads the public ones.
  @property
  def _history_ext(self) -> torch.Tensor:
    return self.history_ext

  @property
  def _node_info_ext(self) -> torch.Tensor:
    return self.node_info_ext

  @property
  def _legal_ext(self) -> torch.Tensor:
    return self.legal_ext

  @property
  def _info_ext(self) -> torch.Tensor:
    return self.info_ext

  def _gather_rows(self, table: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    ids = torch.where(nodes >= 0, nodes, self.num_nodes).reshape(-1)
    return torch.index_select(table, 0, ids).view(*nodes.shape, table.shape[1])

  def history_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., N*D) float32 history encodings of node ids (-1 gives zeros)."""
    return self._gather_rows(self.history_ext, nodes)

  def info_state_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., D) float32 acting player's information-state tensors (-1 or no decision: 0)."""
    return self._gather_rows(self.node_info_ext, nodes)

  # Policies.
  def tabulate(self, policy_fn: PolicyFn, device=None) -> torch.Tensor:
    """(S, A) float64 CPU probabilities of a batched policy at every information state."""
    batch = StepBatch(self.info_tensors, self.info_legal, self.info_player,
                      torch.arange(self.num_infostates), 0)
    if device is not None:
      batch = StepBatch(*[x.to(device) for x in batch[:4]], 0)
    with torch.no_grad(), one_thread():
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

  # Exact evaluation (games.tree.exact.Exact).
  def reach(self, probs: torch.Tensor) -> torch.Tensor:
    """(M, N+1) float64 reach of every node by each player and chance (Exact.reach)."""
    return self.exact.reach(probs)

  def expected_returns(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64 expected returns when every player follows `probs` (S, A)."""
    return self.exact.expected_returns(probs)

  def best_response_values(self, probs: torch.Tensor) -> torch.Tensor:
    """(N,) float64: each player's best-response value against the others' `probs`."""
    return self.exact.best_response_values(probs)

  def action_values(self, probs: torch.Tensor, player: int) -> torch.Tensor:
    """(M, A) float64 action values of `player` at every decision node (Exact)."""
    return self.exact.action_values(probs, player)

  def best_response_cfv(self, probs: torch.Tensor) -> BestResponseCFV:
    """Best responses to `probs` and the counterfactual values against them."""
    return self.exact.best_response_cfv(probs)

  def nash_conv(self, probs: torch.Tensor) -> float:
    """Sum over players of best-response value minus on-policy value."""
    return self.exact.nash_conv(probs)

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



@functools.lru_cache(maxsize=8)
def compile_tree(game_string: str, max_nodes: int = DEFAULT_MAX_NODES) -> GameTree:
  """Cached compiled tree of `game_string`; raises GameError above `max_nodes` nodes."""
  return _build(load_game(game_string), max_nodes)


def count_nodes(game: pyspiel.Game, limit: int) -> int:
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


def knuth_estimate(game: pyspiel.Game, probes: int, seed: int = 0) -> float:
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
    if knuth_estimate(game, 256) > 2 * max_nodes:  # clearly too big: skip the count
      return False
    return count_nodes(game, max_nodes) <= max_nodes
  except (GameError, pyspiel.SpielError, RuntimeError):
    return False
