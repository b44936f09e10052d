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

from games.spiel import GameError, SpielGame, load_game
from games.tree import cache
from games.tree.arrays import CHANCE, DECISION, TERMINAL, TreeArrays, narrow
from games.tree.game_tree import GameTree

# Node counts: kuhn_poker 58, leduc_poker 9457, liars_dice(numdice=1) 294883,
# universal_poker (default) about 1.1e6, leduc_poker(players=3) 1831601, the Leduc-like
# universal_poker with 13 ranks and 4 suits (games.ladder LARGE) 9,984,833, with 12 ranks
# and raise caps 3 2 10,943,905 (compiled within 1.9 GB, loaded and evaluated within 3.4 GB;
# docs/results.md, exact evaluation at scale).
DEFAULT_MAX_NODES = 12_000_000


def _too_big(game_string: str, max_nodes: int) -> GameError:
  return GameError(f"game {game_string!r} has more than {max_nodes} nodes; it is too big to "
                   "compile into a tree. Use the pyspiel sampler (sampler='pyspiel').")


def traverse(sgame: SpielGame, max_nodes: int = DEFAULT_MAX_NODES) -> TreeArrays:
  """Walks the game depth first into a TreeArrays; GameError above `max_nodes` nodes."""
  t0 = time.perf_counter()
  game_string = sgame.game_string
  n = sgame.num_players
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
