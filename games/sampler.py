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


class Trajectories(NamedTuple):
  """B episodes padded to T decision steps. Padded entries have valid=False."""
  info_state: torch.Tensor     # (B, T, D) float32
  history: torch.Tensor        # (B, T, N*D) float32, all players' info-state tensors
  legal_mask: torch.Tensor     # (B, T, A) bool
  player: torch.Tensor         # (B, T) long, -1 on padding
  action: torch.Tensor         # (B, T) long, -1 on padding
  behaviour: torch.Tensor      # (B, T, A) float32, the probabilities the action was drawn from
  valid: torch.Tensor          # (B, T) bool
  length: torch.Tensor         # (B,) long, decision steps per episode
  returns: torch.Tensor        # (B, N) float32, terminal returns
  chance: torch.Tensor         # (B, C) long, chance outcomes in order, -1 padded
  node: torch.Tensor | None = None  # (B, T) long node ids (tree backend only)

  @property
  def batch_size(self) -> int:
    return self.action.shape[0]

  def to(self, device) -> "Trajectories":
    return Trajectories(*[None if x is None else x.to(device) for x in self])


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
  """Steps B pyspiel states in lockstep, one batched policy call per decision step."""

  def sample(self, policy_fn: PolicyFn, batch_size: int) -> Trajectories:
    sg = self.sgame
    n, a_dim, d = sg.num_players, sg.num_actions, sg.info_state_size
    states = [sg.new_initial_state() for _ in range(batch_size)]
    chance = [[] for _ in range(batch_size)]
    steps = []  # per step: (episode idx array, info, history, mask, player, action, probs)
    active = list(range(batch_size))
    t = 0
    while True:
      active = [i for i in active if not self._resolve_chance(states[i], chance[i])]
      if not active:
        break
      act_states = [states[i] for i in active]
      players = np.fromiter((s.current_player() for s in act_states), np.int64, len(active))
      # Each player's tensor once per state: the acting player's is one slice of the history.
      per_player = np.asarray(
          [[s.information_state_tensor(p) for p in range(n)] for s in act_states],
          dtype=np.float32)  # (R, N, D)
      rows = np.arange(len(active))
      info = torch.from_numpy(per_player[rows, players])
      hist = torch.from_numpy(per_player.reshape(len(active), n * d))
      mask = sg.legal_masks(act_states)
      batch = StepBatch(info, mask, torch.from_numpy(players),
                        torch.tensor(active, dtype=torch.long), t)
      probs = policy_fn(batch)
      acts = sample_actions(probs, mask, self.rng.random(len(active))).numpy()
      for s, a in zip(act_states, acts):
        s.apply_action(int(a))
      steps.append((np.asarray(active), info, hist, mask, players, acts,
                    probs.detach().to("cpu", torch.float32)))
      t += 1
    returns = torch.tensor(np.asarray([s.returns() for s in states], dtype=np.float32))
    return _pad(steps, batch_size, n, a_dim, d, returns, chance)

  def _resolve_chance(self, state, log) -> bool:
    """Samples chance nodes until a decision; returns True when the game has ended."""
    while state.is_chance_node():
      outcomes, probs = zip(*state.chance_outcomes())
      p = np.asarray(probs)
      k = int(np.searchsorted(np.cumsum(p), self.rng.random() * p.sum(), side="right"))
      k = min(k, len(outcomes) - 1)
      state.apply_action(outcomes[k])
      log.append(outcomes[k])
    return state.is_terminal()


def _pad(steps, batch_size, n, a_dim, d, returns, chance) -> Trajectories:
  t_max = max(len(steps), 1)
  info = torch.zeros(batch_size, t_max, d)
  hist = torch.zeros(batch_size, t_max, n * d)
  mask = torch.zeros(batch_size, t_max, a_dim, dtype=torch.bool)
  player = torch.full((batch_size, t_max), -1, dtype=torch.long)
  action = torch.full((batch_size, t_max), -1, dtype=torch.long)
  beh = torch.zeros(batch_size, t_max, a_dim)
  for t, (idx, i_t, h_t, m_t, p_t, a_t, pr_t) in enumerate(steps):
    ix = torch.from_numpy(idx)
    info[ix, t] = i_t
    hist[ix, t] = h_t
    mask[ix, t] = m_t
    player[ix, t] = torch.from_numpy(p_t)
    action[ix, t] = torch.from_numpy(a_t)
    beh[ix, t] = pr_t
  valid = player >= 0
  c_max = max((len(c) for c in chance), default=0)
  ch = torch.full((batch_size, max(c_max, 1)), -1, dtype=torch.long)
  for i, c in enumerate(chance):
    if c:
      ch[i, :len(c)] = torch.tensor(c)
  return Trajectories(info, hist, mask, player, action, beh, valid, valid.sum(1), returns, ch)
