"""Batched play against frozen policies through pyspiel, with the histories it visits kept.

`HistoryCache` plays B episodes in lockstep. Each history is expanded through pyspiel the
first time an episode reaches it (its kind, acting player, information state, legal
actions, chance outcomes, returns) and kept as one row of numpy arrays, so that an
episode that passes through it again costs array look-ups only. Nothing is enumerated: a
history exists here only once sampled play has reached it, and the cache is emptied when it
holds more than `max_nodes` histories (then play goes on expanding through pyspiel).

Information states are numbered per player as they are first reached (`Registry`); each
holds its legal mask and the frozen policy's probabilities there, computed once, in one
batched call for all the information states a step discovers. A player's actions come
either from that frozen policy or from an `ActFn` given to `play` (a responder's
behaviour), which sees the ids of the information states its rows are in.

With `uniforms` given, episode i draws its k-th chance outcome and its k-th action from
row i of the two matrices, so the same rows replay the same deal in another seat
(common random numbers).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Protocol, Sequence

import numpy as np
import pyspiel

from armac_spiel.approx.frozen import FrozenPolicy, checked
from games import load_game

CHANCE, DECISION, TERMINAL = 0, 1, 2
STATE_MEMO = 100_000   # pyspiel states kept to expand children without replaying from the root

# (ids (R,), legal (R, A) bool) -> (R, A) probabilities of one player at R decision rows.
ActFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Grow:
  """A numpy array that grows by rows (capacity doubling); new rows hold `fill` until set."""

  def __init__(self, width: Optional[int], dtype, fill=0):
    self.width, self.dtype, self.fill, self.n = width, dtype, fill, 0
    shape = (1024,) if width is None else (1024, width)
    self.data = np.full(shape, fill, dtype=dtype)

  def _reserve(self, k: int) -> None:
    while self.n + k > self.data.shape[0]:
      extra = np.full(self.data.shape, self.fill, dtype=self.dtype)
      self.data = np.concatenate([self.data, extra])

  def append(self, row=None) -> int:
    """One new row (`fill` when row is None); returns its index."""
    self._reserve(1)
    if row is not None:
      self.data[self.n] = row
    self.n += 1
    return self.n - 1

  def add(self, rows) -> int:
    """Appends k rows (an array); returns the first new index."""
    rows = np.asarray(rows, dtype=self.dtype)
    k = rows.shape[0]
    self._reserve(k)
    self.data[self.n:self.n + k] = rows
    self.n += k
    return self.n - k

  @property
  def view(self) -> np.ndarray:
    return self.data[:self.n]


class Registry:
  """One player's information states, numbered as first reached. `tensors` are kept when
  the player's frozen policy reads them (so that a new policy is applied in one call)."""

  def __init__(self, num_actions: int, tensor_size: Optional[int]):
    self.ids: dict[str, int] = {}
    self.keys: list[str] = []
    self.legal = Grow(num_actions, bool, False)
    self.probs = Grow(num_actions, np.float64, 0.0)
    self.node = Grow(None, np.int64, -1)  # a kept history in it (-1: none since a reset)
    self.tensors = None if tensor_size is None else Grow(tensor_size, np.float32)

  def __len__(self) -> int:
    return len(self.keys)


class Play(NamedTuple):
  """What `HistoryCache.play` returns. The `rec_*` arrays list the decisions of the
  recorded player, in time order within each episode (episode-major)."""
  returns: np.ndarray      # (B, N) float64
  rec_episode: np.ndarray  # (M,) episode of each recorded decision
  rec_id: np.ndarray       # (M,) information-state id (the player's Registry)
  rec_action: np.ndarray   # (M,) action taken
  new_nodes: int           # histories expanded through pyspiel during this call
  correction: Optional[np.ndarray] = None  # (B,) control-variate sum (with `baseline`)
  visits: Optional[tuple[np.ndarray, np.ndarray]] = None  # (episode, node) of each history
  rec_node: Optional[np.ndarray] = None   # (M,) history of each recorded decision
  rec_reach: Optional[np.ndarray] = None  # (M,) its chance and other player's reach
  final_node: Optional[np.ndarray] = None   # (B,) terminal history of each episode
  final_reach: Optional[np.ndarray] = None  # (B,) its reach (as rec_reach)


class Baseline(Protocol):
  """A function of the histories (node ids) for control variates."""

  def __call__(self, cache: "HistoryCache", nodes: np.ndarray) -> np.ndarray:
    ...


def draw(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
  """(R,) index k with cdf[k-1] <= u * total < cdf[k]: zero-probability columns are never
  drawn."""
  cdf = np.cumsum(probs, 1)
  total = cdf[:, -1]
  key = np.minimum(u * total, np.nextafter(total, 0.0))
  return np.minimum((cdf <= key[:, None]).sum(1), probs.shape[1] - 1)


class HistoryCache:
  """Lockstep play of a two-player game against frozen policies (one per player)."""

  def __init__(self, game_string: str, policies: Sequence[FrozenPolicy],
               max_nodes: int = 4_000_000):
    sg = load_game(game_string)
    sg.require_two_player_zero_sum("approximate exploitability")
    self.game_string = game_string
    self.game = sg.game
    self.num_actions = sg.num_actions
    self.policies = tuple(policies)
    self.max_nodes = max_nodes
    self.max_chance = max(self.game.max_chance_outcomes(), 1)
    self.registries = tuple(
        Registry(self.num_actions, sg.info_state_size if pol.reads == "tensors" else None)
        for pol in self.policies)
    self.expanded = 0  # histories expanded through pyspiel, over the cache's life
    self.resets = 0
    self._reset_nodes()

  # --------------------------------------------------------------- the histories kept
  def _reset_nodes(self) -> None:
    a = self.num_actions
    self.kind = Grow(None, np.int8)
    self.row = Grow(None, np.int64)       # row of the node in its kind's table
    self.parent = Grow(None, np.int64)
    self.depth = Grow(None, np.int64)
    self.pact = Grow(None, np.int64)      # action (or outcome) from the parent
    self.dec_player = Grow(None, np.int64)
    self.dec_info = Grow(None, np.int64)
    self.dec_child = Grow(a, np.int64, -1)
    self.ch_cdf = Grow(self.max_chance, np.float64, 2.0)
    self.ch_out = Grow(self.max_chance, np.int64, -1)
    self.ch_child = Grow(self.max_chance, np.int64, -1)
    self.term_ret = Grow(2, np.float64)
    self._memo: dict[int, pyspiel.State] = {}
    self._pending: list[list] = [[], []]  # per player: (id, state) awaiting probabilities
    for reg in self.registries:
      reg.node.view[:] = -1
    self._add(self.game.new_initial_state(), -1, -1)
    self._flush()

  @property
  def num_nodes(self) -> int:
    return self.kind.n

  def _add(self, state: pyspiel.State, parent: int, action: int) -> int:
    node = self.kind.n
    if state.is_terminal():
      self.kind.append(TERMINAL)
      self.row.append(self.term_ret.append(state.returns()))
    elif state.is_chance_node():
      outcomes, probs = zip(*state.chance_outcomes())
      r = self.ch_cdf.append()
      c = np.cumsum(probs)
      self.ch_cdf.data[r, :len(c)] = c / c[-1]
      self.ch_cdf.data[r, len(c) - 1] = 1.0
      self.ch_out.append()
      self.ch_out.data[r, :len(c)] = outcomes
      self.ch_child.append()
      self.kind.append(CHANCE)
      self.row.append(r)
    else:
      p = state.current_player()
      info = self._register(p, state)
      reg = self.registries[p]
      if reg.node.data[info] < 0:
        reg.node.data[info] = node
      self.kind.append(DECISION)
      r = self.dec_player.append(p)
      self.dec_info.append(info)
      self.dec_child.append()
      self.row.append(r)
    self.parent.append(parent)
    self.depth.append(0 if parent < 0 else self.depth.data[parent] + 1)
    self.pact.append(action)
    if len(self._memo) >= STATE_MEMO:
      self._memo.clear()
    self._memo[node] = state
    self.expanded += 1
    return node

  def _register(self, p: int, state: pyspiel.State) -> int:
    """The id of the state's information state for player p (new: its probabilities are
    pending until `_flush`)."""
    reg = self.registries[p]
    key = state.information_state_string(p)
    info = reg.ids.get(key)
    if info is None:
      info = reg.ids[key] = len(reg.keys)
      reg.keys.append(key)
      r = reg.legal.append()
      reg.legal.data[r, state.legal_actions()] = True
      reg.probs.append()
      reg.node.append()
      if reg.tensors is not None:
        reg.tensors.append(state.information_state_tensor(p))
      self._pending[p].append((info, state))
    return info

  def set_policies(self, policies: Sequence[FrozenPolicy]) -> None:
    """Plays against `policies` from now on, keeping the histories and information states
    found so far (their probabilities are recomputed, in one call per player)."""
    if any(new.reads != old.reads for new, old in zip(policies, self.policies)):
      raise ValueError("set_policies: a new policy must read what the old one read "
                       f"({[p.reads for p in self.policies]})")
    self.policies = tuple(policies)
    if any(p.reads == "states" for p in self.policies):
      # A state is at hand only when a history is expanded: start over.
      self.registries = tuple(Registry(self.num_actions, None) for _ in self.policies)
      self._reset_nodes()
      return
    for p, reg in enumerate(self.registries):
      if len(reg):
        ids = np.arange(len(reg))
        self._pending[p] = []
        self._apply(p, ids, None)

  def policy_at(self, player: int, states: Sequence[pyspiel.State]) -> np.ndarray:
    """(R, A) the frozen policy of `player` at R of its decision states."""
    ids = [self._register(player, s) for s in states]
    self._flush()
    return self.registries[player].probs.data[ids]

  def state_of(self, player: int, info: int) -> pyspiel.State:
    """A pyspiel state in information state `info` of `player`, reached in the current
    cache (since its last reset)."""
    node = int(self.registries[player].node.data[info])
    if node < 0:
      raise KeyError(f"information state {self.registries[player].keys[info]!r} has no "
                     "history in the cache")
    return self._state(node)

  def _flush(self) -> None:
    """The frozen policies' probabilities at the information states found since the last
    call, one batched call per player."""
    for p, pending in enumerate(self._pending):
      if not pending:
        continue
      self._pending[p] = []
      self._apply(p, np.asarray([i for i, _ in pending]), [s for _, s in pending])

  def _apply(self, p: int, ids: np.ndarray, states) -> None:
    """The frozen policy of player p at its information states `ids`."""
    reg = self.registries[p]
    pol = self.policies[p]
    keys = [reg.keys[i] for i in ids]
    legal = reg.legal.view[ids]
    data = {"keys": keys, "states": states,
            "tensors": None if reg.tensors is None else reg.tensors.view[ids]}[pol.reads]
    probs = pol.probs(p, data, legal)
    reg.probs.view[ids] = checked(np.asarray(probs, dtype=np.float64), legal, keys)

  def _state(self, node: int) -> pyspiel.State:
    """The pyspiel state of `node` (from the memo, else replayed from the nearest memoised
    ancestor)."""
    path = []
    n = node
    while n not in self._memo and n > 0:
      path.append(int(self.pact.data[n]))
      n = int(self.parent.data[n])
    state = self._memo[n] if n in self._memo else self.game.new_initial_state()
    if path:
      state = state.clone()
      for a in reversed(path):
        state.apply_action(a)
    return state

  def _expand(self, nodes: np.ndarray, actions: np.ndarray, chance: bool) -> np.ndarray:
    """Child ids of (nodes[i], actions[i]), expanding the missing ones; for chance nodes
    `actions` are outcome slots."""
    pairs, inv = np.unique(np.stack([nodes, actions], 1), axis=0, return_inverse=True)
    kids = np.empty(len(pairs), dtype=np.int64)
    table = self.ch_child if chance else self.dec_child
    for j, (node, a) in enumerate(pairs.tolist()):
      r = int(self.row.data[node])
      child = int(table.data[r, a])
      if child < 0:
        move = int(self.ch_out.data[r, a]) if chance else a
        child = self._add(self._state(node).child(move), node, move)
        table.data[r, a] = child
      kids[j] = child
    self._flush()
    return kids[inv.reshape(-1)]

  # --------------------------------------------------------------- play
  def play(self, act: Sequence[Optional[ActFn]], batch: int, rng: np.random.Generator,
           uniforms: Optional[tuple[np.ndarray, np.ndarray]] = None,
           record: Optional[int] = None, baseline: Optional[Baseline] = None,
           visits: bool = False) -> Play:
    """Plays `batch` episodes; player p acts by act[p] (None: its frozen policy).

    uniforms: (U_chance (B, C), U_action (B, T)) to draw from, else `rng`. record: the
    player whose decisions are returned. baseline: a function f of histories; then
    `correction` holds, per episode, the sum over its chance and decision nodes h of
    f(h a) - sum_b p(b | h) f(h b) (a the move drawn, p the law it was drawn from), which
    has mean zero whatever f is (control variates, as in AIVAT: Burch et al.,
    arXiv 1612.06915). visits: return every (episode, history) pair visited.
    """
    if self.num_nodes > self.max_nodes:
      self._reset_nodes()
      self.resets += 1
    start = self.expanded
    node = np.zeros(batch, dtype=np.int64)
    kc = np.zeros(batch, dtype=np.int64)
    ka = np.zeros(batch, dtype=np.int64)
    active = np.arange(batch)
    rec, seen = [], []
    corr = np.zeros(batch) if baseline is not None else None
    reach = np.ones(batch)  # chance's and the other players' probabilities so far
    while active.size:
      if visits:
        seen.append((active, node[active].copy()))
      kind = self.kind.data[node[active]]
      ch = active[kind == CHANCE]
      if ch.size:
        rows = self.row.data[node[ch]]
        u = uniforms[0][ch, kc[ch]] if uniforms is not None else rng.random(ch.size)
        kc[ch] += 1
        cdf = self.ch_cdf.data[rows]
        slot = (cdf <= u[:, None]).sum(1)
        probs = np.diff(np.minimum(cdf, 1.0), prepend=0.0, axis=1)
        reach[ch] *= probs[np.arange(ch.size), slot]
        if baseline is not None:
          corr[ch] += self._correction(baseline, node[ch], rows, probs, slot, True)
        node[ch] = self._children(node[ch], rows, slot, True)
      dc = active[kind == DECISION]
      if dc.size:
        rows = self.row.data[node[dc]]
        player = self.dec_player.data[rows]
        info = self.dec_info.data[rows]
        u = uniforms[1][dc, ka[dc]] if uniforms is not None else rng.random(dc.size)
        ka[dc] += 1
        actions = np.empty(dc.size, dtype=np.int64)
        for p in (0, 1):
          sel = np.flatnonzero(player == p)
          if not sel.size:
            continue
          reg = self.registries[p]
          ids = info[sel]
          if act[p] is None:
            probs = reg.probs.data[ids]
          else:
            probs = act[p](ids, reg.legal.data[ids])
          actions[sel] = draw(probs, u[sel])
          if baseline is not None:
            corr[dc[sel]] += self._correction(baseline, node[dc[sel]], rows[sel], probs,
                                              actions[sel], False)
          if record == p:
            rec.append((dc[sel], ids, actions[sel], node[dc[sel]], reach[dc[sel]]))
          else:
            reach[dc[sel]] *= probs[np.arange(sel.size), actions[sel]]
        node[dc] = self._children(node[dc], rows, actions, False)
      active = active[kind != TERMINAL]
    returns = self.term_ret.data[self.row.data[node]]
    seen_out = None
    if visits:
      seen.append((np.arange(batch), node.copy()))
      seen_out = tuple(np.concatenate(x) for x in zip(*seen))
    if rec:
      ep, ids, acts, nodes, reaches = (np.concatenate(x) for x in zip(*rec))
      order = np.argsort(ep, kind="stable")
      ep, ids, acts, nodes, reaches = (x[order] for x in (ep, ids, acts, nodes, reaches))
    else:
      ep = ids = acts = nodes = np.zeros(0, dtype=np.int64)
      reaches = np.zeros(0)
    return Play(returns, ep, ids, acts, self.expanded - start, corr, seen_out, nodes, reaches,
                node, reach)

  def _correction(self, baseline: Baseline, nodes, rows, probs, taken,
                  chance: bool) -> np.ndarray:
    """f(h a) - sum_b p(b) f(h b) at R rows (every child with p > 0 expanded)."""
    table = self.ch_child if chance else self.dec_child
    kids = table.data[rows]
    need = (probs > 0) & (kids < 0)
    if need.any():
      r, c = np.nonzero(need)
      kids[r, c] = self._expand(nodes[r], c, chance)
    live = probs > 0
    f = np.zeros(kids.shape)
    f[live] = baseline(self, kids[live])
    return f[np.arange(len(rows)), taken] - (probs * f).sum(1)

  def node_returns(self, nodes: np.ndarray) -> np.ndarray:
    """(R, N) returns at terminal nodes (rows of other nodes are meaningless)."""
    return self.term_ret.data[self.row.data[nodes]]

  def _children(self, nodes, rows, slots, chance: bool) -> np.ndarray:
    table = self.ch_child if chance else self.dec_child
    kids = table.data[rows, slots]
    missing = np.flatnonzero(kids < 0)
    if missing.size:
      kids[missing] = self._expand(nodes[missing], slots[missing], chance)
    return kids

  def uniforms(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(U_chance (B, C), U_action (B, T)) for `batch` episodes."""
    c = max(self.game.max_chance_nodes_in_history(), 1)
    t = max(self.game.max_game_length(), 1)
    return rng.random((batch, c)), rng.random((batch, t))
