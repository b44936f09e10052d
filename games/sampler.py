"""Vectorised self-play samplers behind one interface.

A sampler plays B episodes in lockstep. At every step it makes one batched policy call for
all games that wait on a decision, samples the actions from the returned probabilities and
advances. Chance outcomes and action draws come from one seeded `numpy.random.Generator`, so
the same seed and the same policy give the same episodes.

Only decision steps are recorded (chance is merged into transitions). The result is a
`Trajectories` record of tensors padded in the time dimension.

Backends:
- `LockstepSampler` steps pyspiel states; it works for every game `games.load_game` accepts.
- `games.tree.TreeSampler` (small games) steps a compiled tree with pure tensor operations.
Learners see only `Sampler.sample`, so a backend is swapped without touching them.
"""

from __future__ import annotations

import abc
import bisect
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


class LockstepSampler(Sampler):
  """Steps B pyspiel states in lockstep, one batched policy call per decision step.

  What a node needs (each player's information-state tensor, the legal mask, the acting
  player, chance outcomes and their cumulative probabilities) is memoised per node, and
  nodes are numbered as they are first reached: a transition seen before costs one
  dictionary look-up on (node id, action) instead of N+1 pyspiel calls and their list
  conversions. At most `cache_size` nodes are memoised; past that, nodes are recomputed.
  """

  def __init__(self, sgame: SpielGame, seed: int, cache_size: int = 1_000_000):
    super().__init__(sgame, seed)
    self.cache_size = cache_size
    self._nodes: list = []          # node id -> (kind, player | outcomes, payload)
    self._children: dict = {}       # (node id, action) -> node id
    self._stride = max(sgame.num_actions, sgame.game.max_chance_outcomes()) + 1
    # Uniforms drawn per step in one call: enough for this many chance nodes per game.
    self._max_chain = 2

  def _node_of(self, state) -> tuple:
    if state.is_chance_node():
      outcomes, probs = zip(*state.chance_outcomes())
      cdf = np.cumsum(probs)
      return (0, outcomes, (cdf / cdf[-1]).tolist())
    if state.is_terminal():
      return (2, None, None)
    sg = self.sgame
    enc = np.asarray([state.information_state_tensor(p) for p in range(sg.num_players)],
                     dtype=np.float32).reshape(-1)
    mask = np.zeros(sg.num_actions, dtype=bool)
    mask[state.legal_actions()] = True
    return (1, state.current_player(), (enc, mask))

  def _memo(self, state) -> int:
    """Id of a new memoised node for `state`, or -1 once the cache is full."""
    if len(self._nodes) >= self.cache_size:
      return -1
    self._nodes.append(self._node_of(state))
    return len(self._nodes) - 1

  def _step(self, nid: int, action: int, state) -> tuple[int, tuple]:
    """Applies `action` to `state`; returns the (id, record) of the node reached."""
    state.apply_action(action)
    if nid >= 0:
      key = nid * self._stride + action
      child = self._children.get(key)
      if child is None:
        child = self._memo(state)
        if child >= 0:
          self._children[key] = child
      if child >= 0:
        return child, self._nodes[child]
    return -1, self._node_of(state)

  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    sg = self.sgame
    n, a_dim, d = sg.num_players, sg.num_actions, sg.info_state_size
    states = [sg.new_initial_state() for _ in range(batch_size)]
    if not self._nodes:
      self._memo(sg.new_initial_state())
    nid = [0] * batch_size
    cur = [self._nodes[0]] * batch_size
    chance = [[] for _ in range(batch_size)]
    steps = []  # per step: (episode idx array, info, history, mask, player, action, probs)
    active = list(range(batch_size))
    t = 0
    while True:
      u = iter(self.rng.random(len(active) * self._max_chain).tolist())
      nodes, still = [], []
      for i in active:
        node = cur[i]
        while node[0] == 0:  # chance: inverse-CDF draw from the memoised cumulative sums
          outcomes, cdf = node[1], node[2]
          x = next(u, None)
          x = float(self.rng.random()) if x is None else x
          k = min(bisect.bisect_right(cdf, x), len(outcomes) - 1)
          chance[i].append(outcomes[k])
          nid[i], node = self._step(nid[i], outcomes[k], states[i])
          cur[i] = node
        if node[0] == 1:
          nodes.append(node)
          still.append(i)
      active = still
      if not active:
        break
      r = len(active)
      players = np.fromiter((nd[1] for nd in nodes), np.int64, r)
      hist_np = np.stack([nd[2][0] for nd in nodes])  # (R, N*D)
      mask = torch.from_numpy(np.stack([nd[2][1] for nd in nodes]))
      hist = torch.from_numpy(hist_np)
      info = torch.from_numpy(
          hist_np.reshape(r, n, d)[np.arange(r), players])  # acting player's slice
      batch = StepBatch(info, mask, torch.from_numpy(players),
                        torch.tensor(active, dtype=torch.long), t)
      probs = policy_fn(batch)
      acts = sample_actions(probs, mask, self.rng.random(r)).numpy()
      for i, a in zip(active, acts.tolist()):
        nid[i], cur[i] = self._step(nid[i], a, states[i])
      steps.append((np.asarray(active), info, hist, mask, players, acts,
                    probs.detach().to("cpu", torch.float32)))
      t += 1
    returns = torch.tensor(np.asarray([s.returns() for s in states], dtype=np.float32))
    return _pad(steps, batch_size, n, a_dim, d, returns, chance)


def _pad(steps, batch_size, n, a_dim, d, returns, chance) -> Trajectories:
  t_max = max(len(steps), 1)
  info = np.zeros((batch_size, t_max, d), dtype=np.float32)
  hist = np.zeros((batch_size, t_max, n * d), dtype=np.float32)
  mask = np.zeros((batch_size, t_max, a_dim), dtype=bool)
  player = np.full((batch_size, t_max), -1, dtype=np.int64)
  action = np.full((batch_size, t_max), -1, dtype=np.int64)
  beh = np.zeros((batch_size, t_max, a_dim), dtype=np.float32)
  for t, (idx, i_t, h_t, m_t, p_t, a_t, pr_t) in enumerate(steps):
    info[idx, t] = i_t.numpy()
    hist[idx, t] = h_t.numpy()
    mask[idx, t] = m_t.numpy()
    player[idx, t] = p_t
    action[idx, t] = a_t
    beh[idx, t] = pr_t.numpy()
  c_max = max((len(c) for c in chance), default=0)
  ch = np.full((batch_size, max(c_max, 1)), -1, dtype=np.int64)
  for i, c in enumerate(chance):
    ch[i, :len(c)] = c
  player_t = torch.from_numpy(player)
  valid = player_t >= 0
  return Trajectories(torch.from_numpy(info), torch.from_numpy(hist), torch.from_numpy(mask),
                      player_t, torch.from_numpy(action), torch.from_numpy(beh), valid,
                      valid.sum(1), returns, torch.from_numpy(ch))
