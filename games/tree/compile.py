"""Compiling a game into a tree of arrays, once per game and OpenSpiel version.

`compile_tree(game_string)` returns the game's `GameTree`: from memory, else from the disk
cache (games.tree.cache), else by one depth-first walk of the OpenSpiel tree (`traverse`).
The walk stores a few numbers per node in typed arrays (no Python object is kept per node),
then renumbers the nodes breadth first (a stable sort by depth) and deduplicates chance
probabilities, returns and information-state tensors; see games.tree.arrays for the layout.
Per node it costs one clone (a child state; the last child reuses its parent's state), the
node's kind, and at decision nodes the legal actions and each player's information-state
string; an information-state tensor is built once per distinct string.

Information states are numbered in the order a depth-first walk first visits them, the
order of `games.infostate_table`. `tree_fits` says whether a game has at most `max_nodes`
nodes.
"""

from __future__ import annotations

import array
import functools
import time

import numpy as np
import pyspiel
import torch

from games.infostates import InfoStateTable
from games.sampler import PolicyFn, StepBatch
from games.spiel import GameError, SpielGame, load_game
from games.tree import cache
from games.tree.arrays import CHANCE, DECISION, TERMINAL, TreeArrays, narrow
from games.tree.exact import BestResponseCFV, Evaluation, Exact, one_thread

# Node counts: kuhn_poker 58, leduc_poker 9457, liars_dice(numdice=1) 294883,
# universal_poker (default) about 1.1e6, leduc_poker(players=3) 1831601, the Leduc-like
# universal_poker with 13 ranks and 4 suits (games.ladder LARGE) about 9.8e6.
DEFAULT_MAX_NODES = 10_000_000


def _too_big(game_string: str, max_nodes: int) -> GameError:
  return GameError(f"game {game_string!r} has more than {max_nodes} nodes; it is too big to "
                   "compile into a tree. Use the pyspiel sampler (sampler='pyspiel').")


def traverse(sgame: SpielGame, max_nodes: int = DEFAULT_MAX_NODES) -> TreeArrays:
  """Walks the game depth first into a TreeArrays; GameError above `max_nodes` nodes."""
  t0 = time.perf_counter()
  game_string = sgame.game_string
  n, a_dim = sgame.num_players, sgame.num_actions
  players = range(n)
  # Per node, in depth-first order.
  kind, depth = array.array("b"), array.array("h")
  parent, action, infostate = array.array("i"), array.array("i"), array.array("i")
  prob, views = array.array("d"), array.array("i")
  returns = array.array("d")            # n per terminal
  no_views = [-1] * n
  # Views: (player, information-state string) -> provisional id; their tensors, flattened.
  view_ids = [{} for _ in players]
  tensors = array.array("f")
  num_views = 0
  # Information states, by their acting view, in first-visit order.
  info_of_view: dict[int, int] = {}
  keys, legal_flat, legal_count, info_player = [], array.array("i"), array.array("i"), \
      array.array("b")
  stack = [(sgame.new_initial_state(), -1, -1, 0.0, 0)]
  count = 0
  while stack:
    state, par, act, pr, d = stack.pop()
    me = count
    count += 1
    if count > max_nodes:
      raise _too_big(game_string, max_nodes)
    parent.append(par)
    action.append(act)
    prob.append(pr)
    depth.append(d)
    if state.is_terminal():
      kind.append(TERMINAL)
      infostate.append(-1)
      views.extend(no_views)
      returns.extend(state.returns())
      continue
    d += 1
    if state.is_chance_node():
      kind.append(CHANCE)
      infostate.append(-1)
      views.extend(no_views)
      outcomes = state.chance_outcomes()
      kids = [state.child(a) for a, _ in outcomes[:-1]]
      a, p = outcomes[-1]
      state.apply_action(a)  # the last child reuses its parent's state
      stack.append((state, me, a, p, d))
      for k in range(len(kids) - 1, -1, -1):
        a, p = outcomes[k]
        stack.append((kids[k], me, a, p, d))
      continue
    kind.append(DECISION)
    cur = state.current_player()
    mine = -1
    for q in players:
      key = state.information_state_string(q)
      ids = view_ids[q]
      vid = ids.get(key)
      if vid is None:
        vid = ids[key] = num_views
        num_views += 1
        tensors.extend(state.information_state_tensor(q))
      views.append(vid)
      if q == cur:
        mine, my_key = vid, key
    legal = state.legal_actions()
    s = info_of_view.get(mine)
    if s is None:
      s = info_of_view[mine] = len(keys)
      keys.append(my_key)
      legal_flat.extend(legal)
      legal_count.append(len(legal))
      info_player.append(cur)
    infostate.append(s)
    kids = [state.child(a) for a in legal[:-1]]
    state.apply_action(legal[-1])
    stack.append((state, me, legal[-1], 0.0, d))
    for k in range(len(kids) - 1, -1, -1):
      stack.append((kids[k], me, legal[k], 0.0, d))
  compile_s = time.perf_counter() - t0
  return _breadth_first(sgame, count, kind, depth, parent, action, infostate, prob, views,
                        returns, tensors, num_views, info_of_view, keys, legal_flat,
                        legal_count, info_player, compile_s)


def _breadth_first(sgame, m, kind, depth, parent, action, infostate, prob, views, returns,
                   tensors, num_views, info_of_view, keys, legal_flat, legal_count,
                   info_player, compile_s) -> TreeArrays:
  """Renumbers the depth-first arrays breadth first and deduplicates rows.

  At each depth, breadth-first order and depth-first order both sort nodes by their path of
  child positions from the root, so a stable sort by depth gives the breadth-first ids."""
  n, a_dim = sgame.num_players, sgame.num_actions
  as_np = lambda buf, t: np.frombuffer(buf, dtype=t)
  kind = as_np(kind, np.int8)
  order = np.argsort(as_np(depth, np.int16), kind="stable")  # breadth-first id -> DFS index
  del depth
  rank = np.empty(m, dtype=np.int64)
  rank[order] = np.arange(m)
  par = as_np(parent, np.int32)[order]
  par = np.where(par >= 0, rank[np.maximum(par, 0)], -1)
  if m > 1 and (np.diff(par[1:]) < 0).any():
    raise GameError(f"game {sgame.game_string!r}: breadth-first renumbering failed")
  num_children = np.bincount(par[1:], minlength=m)
  del par
  # Terminal returns: the i-th terminal of the walk has row i of `returns`.
  ret = as_np(returns, np.float64).reshape(-1, n)
  rows, inv = np.unique(ret, axis=0, return_inverse=True)
  return_id = np.zeros(m, dtype=np.int64)
  return_id[kind == TERMINAL] = inv.reshape(-1) + 1
  return_values = np.concatenate([np.zeros((1, n)), rows])
  edge_probs, edge_prob_id = np.unique(as_np(prob, np.float64)[order], return_inverse=True)
  # Views: information states take ids 0..S-1, the other views follow in walk order.
  s_count = len(keys)
  vmap = np.full(num_views, -1, dtype=np.int64)
  if info_of_view:
    vmap[np.fromiter(info_of_view.keys(), np.int64, len(info_of_view))] = np.fromiter(
        info_of_view.values(), np.int64, len(info_of_view))
  rest = np.flatnonzero(vmap < 0)
  vmap[rest] = s_count + np.arange(len(rest))
  d = sgame.info_state_size
  view_tensors = np.empty((num_views, d), dtype=np.float32)
  view_tensors[vmap] = as_np(tensors, np.float32).reshape(num_views, d)
  view = as_np(views, np.int32).reshape(m, n)[order]
  view = np.where(view >= 0, vmap[np.maximum(view, 0)], -1)
  legal = np.zeros((s_count, a_dim), dtype=bool)
  counts = as_np(legal_count, np.int32)
  legal[np.repeat(np.arange(s_count), counts), as_np(legal_flat, np.int32)] = True
  width = max(a_dim, sgame.game.max_chance_outcomes())
  arrays = TreeArrays(
      game_string=sgame.game_string, openspiel_version=cache.OPENSPIEL_VERSION,
      num_players=n, num_actions=a_dim, width=width, compile_s=compile_s,
      infostate=narrow(as_np(infostate, np.int32)[order]),
      num_children=narrow(num_children), action=narrow(as_np(action, np.int32)[order]),
      edge_prob_id=narrow(edge_prob_id.reshape(-1)), edge_probs=edge_probs,
      return_id=narrow(return_id[order]), return_values=return_values,
      view=narrow(view), view_tensors=view_tensors, info_keys=tuple(keys),
      info_legal=legal, info_player=as_np(info_player, np.int8).copy())
  arrays.check()
  return arrays


class GameTree:
  """A compiled game tree; node 0 is the root, ids are in breadth-first order.

  Node tables are torch tensors over the arrays of `self.arrays` (games.tree.arrays). Dense
  forms kept for small trees (`children`, `chance_outcome`, `chance_prob`, `returns`,
  `legal_mask`, `history`, the `*_ext` tables) are built on first use; their cost is in
  their docstrings (M nodes, W children columns, N players, D tensor width). Exact
  evaluation lives in `exact` (games.tree.exact.Exact, CPU) and `exact_on(device)`."""

  def __init__(self, arrays: TreeArrays):
    self.arrays = a = arrays
    self.game_string = a.game_string
    self.sgame = load_game(a.game_string)
    self.num_players = a.num_players
    self.num_actions = a.num_actions
    self.num_nodes = a.num_nodes
    self.num_infostates = a.num_infostates
    self.num_children = torch.from_numpy(a.num_children)  # (M,) smallest integer type
    self.first_child = torch.from_numpy(a.first_child)  # (M,) int64
    self.view_tensors = torch.from_numpy(a.view_tensors)  # (V, D) float32
    s = a.num_infostates
    self.info_tensors = self.view_tensors[:s]           # (S, D) float32
    self.info_legal = torch.from_numpy(a.info_legal)    # (S, A) bool
    self.info_player = torch.from_numpy(a.info_player.astype(np.int64))  # (S,) long
    self.info_keys = a.info_keys
    self.depth_bounds = list(a.depth_bounds)  # nodes at depth d: [bounds[d], bounds[d+1])
    self._exact: dict[str, Exact] = {}

  def __repr__(self) -> str:
    return (f"GameTree({self.game_string!r}, nodes={self.num_nodes}, "
            f"infostates={self.num_infostates})")

  @functools.cached_property
  def table(self) -> InfoStateTable:
    """The information states as a games.InfoStateTable (equal to infostate_table's)."""
    return InfoStateTable(self.game_string, self.info_keys, self.info_tensors,
                          self.info_legal, self.info_player,
                          int((self.arrays.infostate >= 0).sum()))

  # Structure (int64 tensors, 8 M bytes each, made on first use; `arrays` holds them
  # compactly).
  @functools.cached_property
  def kind(self) -> torch.Tensor:
    """(M,) int64: CHANCE, DECISION or TERMINAL."""
    return torch.from_numpy(self.arrays.kind.astype(np.int64))

  @functools.cached_property
  def player(self) -> torch.Tensor:
    """(M,) int64: acting player, -1 where none acts."""
    return torch.from_numpy(self.arrays.player.astype(np.int64))

  @functools.cached_property
  def infostate(self) -> torch.Tensor:
    """(M,) int64: information-state id (row of the table), -1 where none acts."""
    return torch.from_numpy(self.arrays.infostate.astype(np.int64))

  @functools.cached_property
  def depth(self) -> torch.Tensor:
    """(M,) int64."""
    return torch.from_numpy(self.arrays.depth.astype(np.int64))

  @functools.cached_property
  def parent(self) -> torch.Tensor:
    """(M,) int64, -1 at the root."""
    return torch.from_numpy(self.arrays.parent)

  @functools.cached_property
  def parent_slot(self) -> torch.Tensor:
    """(M,) int64: the column of each node in children[parent], -1 at the root."""
    return torch.from_numpy(self.arrays.column)

  @functools.cached_property
  def children(self) -> torch.Tensor:
    """(M, W) int64 (8 M W bytes): children by action (decision) or outcome slot, -1."""
    a = self.arrays
    out = np.full((a.num_nodes, a.width), -1, dtype=np.int64)
    out[a.parent[1:], a.column[1:]] = np.arange(1, a.num_nodes)
    return torch.from_numpy(out)

  def _chance_slots(self, values, fill, dtype) -> torch.Tensor:
    a = self.arrays
    out = np.full((a.num_nodes, a.width), fill, dtype=dtype)
    c = np.flatnonzero(a.kind[a.parent[1:]] == CHANCE) + 1
    out[a.parent[c], a.column[c]] = values[c]
    return torch.from_numpy(out)

  @functools.cached_property
  def chance_outcome(self) -> torch.Tensor:
    """(M, W) int64: chance outcome ids by slot, -1."""
    return self._chance_slots(self.arrays.action, -1, np.int64)

  @functools.cached_property
  def chance_prob(self) -> torch.Tensor:
    """(M, W) float64: chance probabilities by slot, 0."""
    a = self.arrays
    return self._chance_slots(a.edge_probs[a.edge_prob_id], 0.0, np.float64)

  @functools.cached_property
  def returns(self) -> torch.Tensor:
    """(M, N) float64: terminal returns, 0 elsewhere."""
    a = self.arrays
    return torch.from_numpy(a.return_values[a.return_id])

  @functools.cached_property
  def legal_mask(self) -> torch.Tensor:
    """(M, A) bool: legal actions at decision nodes (M A bytes)."""
    return self.legal_ext[:-1]

  @functools.cached_property
  def view(self) -> torch.Tensor:
    """(M, N) int64: row of view_tensors per player at decision nodes, -1 elsewhere."""
    return torch.from_numpy(self.arrays.view.astype(np.int64))

  # Encodings. Views exist at decision nodes only: elsewhere the history is zeros.
  @functools.cached_property
  def _views_ext(self) -> torch.Tensor:
    return torch.cat([self.view_tensors, torch.zeros(1, self.view_tensors.shape[1])])

  def history_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., N*D) float32 history encodings (every player's information-state tensor) of
    decision node ids, gathered from the views; other nodes and -1 give zeros."""
    v = torch.from_numpy(self.arrays.view)
    ids = torch.where(nodes >= 0, nodes, 0).reshape(-1)
    rows = torch.index_select(v, 0, ids).long()
    rows = torch.where((nodes.reshape(-1, 1) >= 0) & (rows >= 0), rows, len(self.view_tensors))
    return torch.index_select(self._views_ext, 0, rows.reshape(-1)).view(*nodes.shape, -1)

  def info_state_of(self, nodes: torch.Tensor) -> torch.Tensor:
    """(..., D) float32 acting player's information-state tensors (-1 or no decision: 0)."""
    ids = torch.where(nodes >= 0, nodes, 0).reshape(-1)
    s = torch.index_select(torch.from_numpy(self.arrays.infostate), 0, ids).long()
    s = torch.where((nodes.reshape(-1) >= 0) & (s >= 0), s, self.num_infostates)
    return torch.index_select(self.info_ext, 0, s).view(*nodes.shape, -1)

  @functools.cached_property
  def history(self) -> torch.Tensor:
    """(M, N*D) float32 (4 M N D bytes): history encodings of every node (history_of)."""
    return self.history_of(torch.arange(self.num_nodes))

  @functools.cached_property
  def history_ext(self) -> torch.Tensor:
    """(M+1, N*D) float32 (4 (M+1) N D bytes): `history` and a zero row (id -1)."""
    return self.history_of(torch.arange(-1, self.num_nodes).roll(-1))

  @functools.cached_property
  def info_ext(self) -> torch.Tensor:
    """(S+1, D) float32: the information-state tensors and a zero row (id -1)."""
    return torch.cat([self.info_tensors, torch.zeros(1, self.info_tensors.shape[1])])

  @functools.cached_property
  def node_info_ext(self) -> torch.Tensor:
    """(M+1, D) float32 (4 (M+1) D bytes): the acting player's information-state tensor at
    each node (zeros where no player acts) and a zero row (id -1)."""
    return self.info_state_of(torch.arange(-1, self.num_nodes).roll(-1))

  @functools.cached_property
  def legal_ext(self) -> torch.Tensor:
    """(M+1, A) bool (M A bytes): legal actions of each node (none where no player acts)
    and a row of False (id -1)."""
    ext = torch.cat([self.info_legal, torch.zeros(1, self.num_actions, dtype=torch.bool)])
    s = torch.from_numpy(self.arrays.infostate).long()
    s = torch.cat([torch.where(s >= 0, s, self.num_infostates),
                   torch.tensor([self.num_infostates])])
    return ext[s]

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

  # Exact evaluation (games.tree.exact.Exact): one policy (S, A) or K policies (K, S, A).
  @property
  def exact(self) -> Exact:
    """The exact evaluator on CPU."""
    return self.exact_on("cpu")

  def exact_on(self, device) -> Exact:
    """The exact evaluator on `device` (built once per device)."""
    key = str(torch.device(device))
    if key not in self._exact:
      self._exact[key] = Exact(self.arrays, device)
    return self._exact[key]

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

  def evaluate(self, probs: torch.Tensor) -> Evaluation:
    """Values, best-response values and own reach of K policies (K, S, A) in one pass."""
    return self.exact.evaluate(probs)

  def nash_conv(self, probs: torch.Tensor):
    """Sum over players of best-response value minus on-policy value: a float for one
    policy (S, A), a (K,) tensor for K policies (K, S, A)."""
    return self.exact.nash_conv(probs)

  def exploitability(self, probs: torch.Tensor):
    """nash_conv / 2; two-player zero-sum games only."""
    self.sgame.require_two_player_zero_sum("exploitability")
    return self.nash_conv(probs) / self.num_players


def _load_or_compile(game_string: str, max_nodes: int) -> TreeArrays:
  arrays = cache.load(game_string)
  if arrays is None:
    arrays = traverse(load_game(game_string), max_nodes)
    cache.store(arrays)
  elif arrays.num_nodes > max_nodes:
    raise _too_big(game_string, max_nodes)
  return arrays


@functools.lru_cache(maxsize=8)
def compile_tree(game_string: str, max_nodes: int = DEFAULT_MAX_NODES) -> GameTree:
  """The compiled tree of `game_string` (memory, disk cache, or a walk of the game);
  raises GameError above `max_nodes` nodes."""
  return GameTree(_load_or_compile(game_string, max_nodes))


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
  """Whether the game's tree has at most `max_nodes` nodes; False for invalid games. A
  cached tree answers at once; a game whose Knuth estimate is more than twice the limit is
  refused; any other is counted."""
  try:
    cached = cache.cached_num_nodes(game_string)
    if cached is not None:
      return cached <= max_nodes
    game = load_game(game_string).game
    if knuth_estimate(game, 256) > 2 * max_nodes:  # clearly too big: skip the count
      return False
    return count_nodes(game, max_nodes) <= max_nodes
  except (GameError, pyspiel.SpielError, RuntimeError):
    return False
