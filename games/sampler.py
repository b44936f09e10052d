"""Vectorised self-play samplers behind one interface.

A sampler plays B episodes in lockstep. At every step it makes one batched policy call for
all games that wait on a decision, samples the actions from the returned probabilities and
advances. Chance outcomes and action draws come from one seeded `numpy.random.Generator`, so
the same seed and the same policy give the same episodes.

Only decision steps are recorded (chance is merged into transitions). The result is a
`Trajectories` record of tensors padded in the time dimension.

Backends:
- `LockstepSampler` plays pyspiel games and memoises the nodes it reaches in numpy tables;
  it works for every game `games.load_game` accepts.
- `games.tree.TreeSampler` (small games) steps a compiled tree with pure tensor operations.
Learners see only `Sampler.sample`, so a backend is swapped without touching them.
"""

from __future__ import annotations

import abc
import bisect
import itertools
from typing import Callable, NamedTuple

import numpy as np
import torch

from games.spiel import SpielGame


class StepBatch(NamedTuple):
  """What a policy sees at one lockstep step: the R games that wait on a decision."""
  info_state: torch.Tensor   # (R, D) float32, acting player's information-state tensor
  legal_mask: torch.Tensor   # (R, A) bool
  player: torch.Tensor       # (R,) long, acting player
  episode: torch.Tensor      # (R,) long, index of each game in the batch (0..B-1)
  step: int                  # decision step index (same for all rows)
  infostate: torch.Tensor | None = None  # (R,) long information-state ids (tree backend)


# A batched policy: StepBatch -> (R, A) probabilities, zero on illegal actions.
PolicyFn = Callable[[StepBatch], torch.Tensor]


class TablePolicy:
  """A policy that depends on the information state only: `fn(info (S, D), legal (S, A))`
  returns (S, A) probabilities. It is also a PolicyFn (called on a step's rows), so every
  backend accepts it; a backend that enumerates the information states (the compiled tree)
  calls `fn` once per batch on all of them and plays every step by table look-ups."""

  def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    self.fn = fn

  def __call__(self, batch: StepBatch) -> torch.Tensor:
    return self.fn(batch.info_state, batch.legal_mask)


_TRAJ_FIELDS = ("info_state", "history", "legal_mask", "player", "action", "behaviour",
                "valid", "length", "returns", "chance", "node")


class Trajectories:
  """B episodes padded to T decision steps. Padded entries have valid=False.

  Fields (tensors):
    info_state (B, T, D) float32; history (B, T, N*D) float32, all players' info-state
    tensors; legal_mask (B, T, A) bool; player (B, T) long, -1 on padding; action (B, T)
    long, -1 on padding; behaviour (B, T, A) float32, the probabilities each action was drawn
    from; valid (B, T) bool; length (B,) decision steps; returns (B, N) float32; chance (B, C)
    long outcomes in order, -1 padded; node (B, T) long node ids (tree backend) or None.

  A field may be given as a zero-argument callable: it is gathered on first access and kept
  (the tree backend gathers encodings from its tables only when a consumer reads them).
  """

  __slots__ = tuple("_" + f for f in _TRAJ_FIELDS)

  def __init__(self, info_state, history, legal_mask, player, action, behaviour, valid,
               length, returns, chance, node=None):
    for f, v in zip(_TRAJ_FIELDS, (info_state, history, legal_mask, player, action,
                                   behaviour, valid, length, returns, chance, node)):
      setattr(self, "_" + f, v)

  def __iter__(self):
    return (getattr(self, f) for f in _TRAJ_FIELDS)

  @property
  def batch_size(self) -> int:
    return self.action.shape[0]

  def to(self, device) -> "Trajectories":
    return Trajectories(*[None if x is None else x.to(device) for x in self])


def _lazy_field(name: str):
  def get(self):
    v = getattr(self, "_" + name)
    if callable(v) and not isinstance(v, torch.Tensor):
      v = v()
      setattr(self, "_" + name, v)
    return v
  return property(get)


for _f in _TRAJ_FIELDS:
  setattr(Trajectories, _f, _lazy_field(_f))


class Sampler(abc.ABC):
  """Plays batches of episodes; `policy_fn` is called once per decision step."""

  def __init__(self, sgame: SpielGame, seed: int):
    self.sgame = sgame
    self.rng = np.random.default_rng(seed)

  @abc.abstractmethod
  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    """Plays `batch_size` episodes to the end with actions drawn from `policy_fn`."""

  def get_rng_state(self) -> dict:
    return self.rng.bit_generator.state

  def set_rng_state(self, state: dict) -> None:
    self.rng.bit_generator.state = state


def sample_actions(probs: torch.Tensor, legal: torch.Tensor, u: np.ndarray) -> torch.Tensor:
  """Draws one action per row from `probs` restricted to `legal`, given uniforms u in [0,1).

  Inverse CDF on the unnormalised cumulative sums: action k is drawn when
  cdf[k-1] <= u * cdf[-1] < cdf[k], so zero-probability actions are never drawn."""
  p = probs.detach().to("cpu", torch.float64).clamp_min(0.0)
  p.mul_(legal.cpu())
  cdf = torch.cumsum(p, 1)
  total = cdf[:, -1]
  # u * total can round up onto total; keep the key strictly below it.
  key = torch.minimum(torch.from_numpy(u) * total, torch.nextafter(total, total.new_zeros(())))
  return (cdf <= key[:, None]).sum(1).clamp_max_(p.shape[1] - 1)


_DECISION, _CHANCE, _TERMINAL = 0, 1, 2


class _Uniforms:
  """The chance uniforms of one step: a pool of `n` drawn up front, extended from the same
  stream on demand. `settle(used)` leaves the generator exactly `max(n, used)` draws past
  the pool's start, so reading ahead costs no draws (each double is one draw of the bit
  generator, so one batch and single draws read the same stream)."""

  def __init__(self, rng: np.random.Generator, n: int):
    self.rng, self.base = rng, n
    self.u = rng.random(n)
    self._state = None  # the generator's state at the end of the pool

  def upto(self, m: int) -> np.ndarray:
    """The uniforms, at least m of them."""
    if m > len(self.u):
      if self._state is None:
        self._state = self.rng.bit_generator.state
      extra = self.rng.random(max(m, 2 * len(self.u)) - len(self.u))
      self.u = np.concatenate([self.u, extra])
    return self.u

  def settle(self, used: int) -> None:
    if len(self.u) > max(self.base, used):
      self.rng.bit_generator.state = self._state
      self.rng.random(max(used - self.base, 0))


def _filled(shape: tuple, dtype, fill) -> np.ndarray:
  # np.zeros leaves untouched pages unallocated: a column costs memory for the rows used.
  return np.zeros(shape, dtype) if fill == 0 else np.full(shape, fill, dtype)


class _Table:
  """Growable rows of named numpy columns: name=(row shape, dtype, fill)."""

  def __init__(self, **cols):
    self.spec, self.n, self.cap = cols, 0, 16
    for k, (shape, dtype, fill) in cols.items():
      setattr(self, k, _filled((self.cap,) + shape, dtype, fill))

  def add(self) -> int:
    """Index of a new row (holding the fill values)."""
    if self.n == self.cap:
      for k, (shape, dtype, fill) in self.spec.items():
        col = _filled((2 * self.cap,) + shape, dtype, fill)
        col[:self.cap] = getattr(self, k)
        setattr(self, k, col)
      self.cap *= 2
    self.n += 1
    return self.n - 1

  def truncate(self, n: int) -> None:
    for k, (_, _, fill) in self.spec.items():
      getattr(self, k)[n:self.n] = fill
    self.n = n


class _Ragged:
  """Per-episode int64 lists, -1 padded, (B, grown as needed), with their lengths."""

  def __init__(self, b: int, width: int):
    self.a = np.full((b, max(width, 1)), -1, np.int64)
    self.n = np.zeros(b, np.int64)

  def append(self, idx: np.ndarray, vals) -> None:
    pos = self.n[idx]
    if pos.max() >= self.a.shape[1]:
      self.a = np.concatenate([self.a, np.full_like(self.a, -1)], 1)
    self.a[idx, pos] = vals
    self.n[idx] = pos + 1

  def push(self, i: int, v: int) -> None:
    n = int(self.n[i])
    if n == self.a.shape[1]:
      self.a = np.concatenate([self.a, np.full_like(self.a, -1)], 1)
    self.a[i, n] = v
    self.n[i] = n + 1


class LockstepSampler(Sampler):
  """Steps B episodes in lockstep, one batched policy call per decision step.

  Nodes are numbered as they are first reached and memoised in numpy tables: per decision
  node every player's information-state tensor, the legal mask and the acting player; per
  chance node the outcomes and their cumulative probabilities; per terminal node the
  returns; and each node's children, by action or outcome index. A step through known nodes
  is a few array gathers for the whole batch and no pyspiel call: an episode's pyspiel state
  is built, by replaying its moves, only when it reaches a node not seen before. At most
  `cache_size` nodes are kept; past that, new nodes live for one batch.

  Each step draws a pool of uniforms that the chance nodes read in episode order (an
  episode's chance nodes in a row read consecutive ones), then one uniform per action: the
  episodes depend on the seed, the policy and the batch sizes, never on the cache.
  """

  def __init__(self, sgame: SpielGame, seed: int, cache_size: int = 1_000_000):
    super().__init__(sgame, seed)
    if cache_size < 1:
      raise ValueError(f"cache_size must be at least 1 (the root node), got {cache_size}")
    self.cache_size = cache_size
    self._num_players = sgame.num_players
    n, d, a_dim = sgame.num_players, sgame.info_state_size, sgame.num_actions
    c_dim = max(sgame.game.max_chance_outcomes(), 1)
    self._node = _Table(kind=((), np.int8, -1), row=((), np.int64, -1))
    # Decision row 0 pads the trajectories: zeros, no legal action, player -1.
    self._dec = _Table(hist=((n, d), np.float32, 0), mask=((a_dim,), bool, False),
                       player=((), np.int64, -1), child=((a_dim,), np.int32, -1))
    self._dec.add()
    # Chance rows: normalised cumulative sums (+inf padded), outcomes, their number,
    # children by outcome index, and the length of the last run of chance nodes from here.
    self._chance = _Table(cdf=((c_dim,), np.float64, np.inf), out=((c_dim,), np.int64, -1),
                          num=((), np.int64, 0), child=((c_dim,), np.int32, -1),
                          chain=((), np.int64, 1))
    self._term = _Table(returns=((n,), np.float32, 0))
    self._kept = None  # (decision, chance, terminal) rows of the cached nodes, once full
    # New decision and terminal rows wait here as Python lists, converted in one batch.
    self._pending_dec: list = []   # (row, player, all players' tensors, legal actions)
    self._pending_term: list = []  # (row, returns)
    # Uniforms drawn per step in one call: enough for this many chance nodes per game.
    self._max_chain = 2

  @property
  def num_cached_nodes(self) -> int:
    return min(self._node.n, self.cache_size)

  def _add_node(self, state) -> int:
    """Id of a new node for `state` (its kind's table gets a row)."""
    p = state.current_player()
    if p >= 0:
      row, kind = self._dec.add(), _DECISION
      hist = state.information_state_tensor(0)
      for q in range(1, self._num_players):
        hist += state.information_state_tensor(q)
      self._pending_dec.append((row, p, hist, state.legal_actions()))
    elif state.is_chance_node():
      outcomes, probs = zip(*state.chance_outcomes())
      cdf = np.cumsum(probs)
      c, m = self._chance, len(outcomes)
      row = c.add()
      c.num[row] = m
      c.cdf[row, :m] = cdf / cdf[-1]
      c.out[row, :m] = outcomes
      kind = _CHANCE
    else:
      row, kind = self._term.add(), _TERMINAL
      self._pending_term.append((row, state.returns()))
    nid = self._node.add()
    self._node.kind[nid] = kind
    self._node.row[nid] = row
    if nid == self.cache_size - 1:
      self._kept = (self._dec.n, self._chance.n, self._term.n)
    return nid

  def _flush(self) -> None:
    """Writes the pending decision and terminal rows into their tables."""
    if self._pending_dec:
      dt = self._dec
      rows, players, hist, legal = zip(*self._pending_dec)
      rows = np.asarray(rows)
      dt.hist[rows] = np.asarray(hist, dtype=np.float32).reshape((len(rows),) + dt.hist.shape[1:])
      dt.player[rows] = players
      dt.mask[np.repeat(rows, [len(a) for a in legal]),
              np.fromiter(itertools.chain.from_iterable(legal), np.int64)] = True
      self._pending_dec.clear()
    if self._pending_term:
      rows, returns = zip(*self._pending_term)
      self._term.returns[np.asarray(rows)] = np.asarray(returns, dtype=np.float32)
      self._pending_term.clear()

  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    if self._node.n == 0:
      self._add_node(self.sgame.new_initial_state())
    ep = _Episodes(self, batch_size)
    node, dec = self._node, self._dec
    steps = []  # per step: (episodes, decision rows, actions, probabilities)
    act = np.arange(batch_size)
    n_prev = batch_size
    while True:
      pool = _Uniforms(self.rng, n_prev * self._max_chain)
      at_chance = act[node.kind[ep.cur[act]] == _CHANCE]
      pool.settle(self._play_chance(ep, at_chance, pool) if len(at_chance) else 0)
      act = act[node.kind[ep.cur[act]] == _DECISION]
      if not len(act):
        break
      self._flush()
      rows = node.row[ep.cur[act]]
      mask = torch.from_numpy(dec.mask[rows])
      players = dec.player[rows]
      batch = StepBatch(torch.from_numpy(dec.hist[rows, players]), mask,
                        torch.from_numpy(players), torch.from_numpy(act), len(steps))
      probs = policy_fn(batch)
      acts = sample_actions(probs, mask, self.rng.random(len(act))).numpy()
      ep.moves.append(act, acts)
      child = dec.child[rows, acts]
      new = np.flatnonzero(child < 0)  # new nodes, in episode order
      for j, i, r, a in zip(new.tolist(), act[new].tolist(), rows[new].tolist(),
                            acts[new].tolist()):
        c = dec.child[r, a]  # another episode may have just added it
        child[j] = c if c >= 0 else ep.reach(i, r, a, chance=False)
      ep.cur[act] = child
      steps.append((act, rows, acts, probs.detach().to("cpu", torch.float32).numpy()))
      n_prev = len(act)
    self._flush()
    out = _gather(self, ep, steps, batch_size)
    if node.n > self.cache_size:  # drop this batch's uncached nodes
      node.truncate(self.cache_size)
      for tab, m in zip((self._dec, self._chance, self._term), self._kept):
        tab.truncate(m)
    return out

  def _play_chance(self, ep: "_Episodes", eps: np.ndarray, pool: _Uniforms) -> int:
    """Plays the chance nodes in a row of episodes `eps` (ascending); returns the number of
    uniforms read. Episode k reads from the sum of the chain lengths before it: the lengths
    are guessed (each start node's last one), the chains played in batched rounds through
    cached nodes and the guess checked; an uncached node, or a second wrong guess, falls
    back to playing the episodes one by one."""
    ch, node = self._chance, self._node
    start = ep.cur[eps]
    if start.max() < self.cache_size:
      lens = ch.chain[node.row[start]]
      for _ in range(2):
        got = self._chance_rounds(start, np.cumsum(lens) - lens, pool)
        if got is None:
          break
        new_lens, rounds = got
        if np.array_equal(new_lens, lens):
          for sel, outcomes, child in rounds:
            ep.moves.append(eps[sel], outcomes)
            ep.chance.append(eps[sel], outcomes)
            ep.cur[eps[sel]] = child
          ch.chain[node.row[start]] = lens
          return int(lens.sum())
        lens = new_lens
    used = 0
    for i in eps.tolist():
      nid = int(ep.cur[i])
      while node.kind[nid] == _CHANCE:
        x = pool.upto(used + 1)[used]
        used += 1
        r = int(node.row[nid])
        m = int(ch.num[r])
        k = min(bisect.bisect_right(ch.cdf[r, :m].tolist(), x), m - 1)
        o = int(ch.out[r, k])
        ep.moves.push(i, o)
        ep.chance.push(i, o)
        child = int(ch.child[r, k])
        nid = ep.cur[i] = child if child >= 0 else ep.reach(i, r, k, chance=True)
    return used

  def _chance_rounds(self, start: np.ndarray, off: np.ndarray, pool: _Uniforms):
    """Chains of chance draws from cached nodes `start`, chain k reading uniforms from
    off[k]: (chain lengths, [(chains drawn, outcomes, children) per round]), or None where
    a chain reaches a node not cached yet."""
    ch, node = self._chance, self._node
    cur, pos = start.copy(), off.copy()
    lens = np.zeros(len(start), np.int64)
    alive = np.arange(len(start))
    rounds = []
    while len(alive):
      u = pool.upto(int(pos[alive].max()) + 1)
      r = node.row[cur[alive]]
      # bisect_right on each node's cumulative sums (padded with +inf), last outcome at most
      k = np.minimum((ch.cdf[r] <= u[pos[alive], None]).sum(1), ch.num[r] - 1)
      child = ch.child[r, k]
      if (child < 0).any():
        return None
      rounds.append((alive, ch.out[r, k], child))
      cur[alive] = child
      pos[alive] += 1
      lens[alive] += 1
      alive = alive[node.kind[child] == _CHANCE]
    return lens, rounds


class _Episodes:
  """A batch's episodes: current node ids, moves so far (chance outcomes and actions), the
  chance outcomes alone, and pyspiel states built lazily by replaying the moves."""

  def __init__(self, sampler: LockstepSampler, b: int):
    self.sampler = sampler
    self.cur = np.zeros(b, np.int64)  # node 0: the root
    length = sampler.sgame.game.max_history_length()
    self.moves = _Ragged(b, length)
    self.chance = _Ragged(b, length)
    self._states: list = [None] * b
    self._synced = [0] * b

  def reach(self, i: int, row: int, k: int, chance: bool) -> int:
    """Id of the node that episode i reaches by its last recorded move, taken at its current
    node (decision or chance `row`) by action or outcome index k: built from pyspiel, and
    linked from its parent when both are cached."""
    smp, s, n = self.sampler, self._states[i], int(self.moves.n[i])
    if s is None:
      s = self._states[i] = smp.sgame.new_initial_state()
    for a in self.moves.a[i, self._synced[i]:n].tolist():
      s.apply_action(a)
    self._synced[i] = n
    nid = smp._add_node(s)
    if nid < smp.cache_size:  # then the parent is cached too
      (smp._chance if chance else smp._dec).child[row, k] = nid
    return nid


def _gather(smp: LockstepSampler, ep: _Episodes, steps, batch_size: int) -> Trajectories:
  """The batch's Trajectories: one gather from the node tables per field."""
  t_max = max(len(steps), 1)
  rows = np.zeros((batch_size, t_max), np.int64)  # decision row 0: padding
  action = np.full((batch_size, t_max), -1, np.int64)
  beh = np.zeros((batch_size, t_max, smp.sgame.num_actions), np.float32)
  for t, (idx, r, a, pr) in enumerate(steps):
    rows[idx, t] = r
    action[idx, t] = a
    beh[idx, t] = pr
  dec = smp._dec
  player = dec.player[rows]
  info = dec.hist[rows, np.maximum(player, 0)]  # padding: row 0, zeros
  hist = dec.hist[rows].reshape(batch_size, t_max, -1)
  player = torch.from_numpy(player)
  valid = player >= 0
  returns = torch.from_numpy(smp._term.returns[smp._node.row[ep.cur]])
  chance = ep.chance.a[:, :max(int(ep.chance.n.max(initial=0)), 1)].copy()
  return Trajectories(torch.from_numpy(info), torch.from_numpy(hist),
                      torch.from_numpy(dec.mask[rows]), player, torch.from_numpy(action),
                      torch.from_numpy(beh), valid, valid.sum(1), returns,
                      torch.from_numpy(chance))
