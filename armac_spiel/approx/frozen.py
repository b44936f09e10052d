"""A fixed policy, queried one batch of newly seen information states at a time.

Approximate evaluation plays against a frozen policy through pyspiel states, and looks up
each information state's probabilities once (armac_spiel.approx.histories keeps them per
information state). `frozen_policy(game_string, pol)` wraps what the toolkit calls a
policy:
- a (S, A) table over `games.infostate_table(game).keys` (armac_spiel.evaluation): a row
  look-up by information-state string;
- an object with `batch_probs(info_state (R, D), legal_mask (R, A)) -> (R, A)` (ARMAC's
  network policies): one batched call on the information-state tensors;
- a batched callable `fn(info_state, legal_mask) -> probs`: the same;
- an OpenSpiel `policy.Policy` or a pyspiel policy (a solver's average policy):
  `action_probabilities(state)` per state.
Only the first needs the game's information states enumerated; the others serve games of
any size.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import pyspiel
import torch
from open_spiel.python import policy as os_policy

from armac_spiel.evaluation import PolicyError
from games import infostate_table, load_game

# Probabilities of a policy's rows may be off by this much from a distribution.
ATOL = 1e-6


@runtime_checkable
class BatchedPolicy(Protocol):
  """A policy over information-state tensors (ARMAC's `NetworkPolicy`)."""

  def batch_probs(self, info_state: torch.Tensor, legal_mask: torch.Tensor) -> torch.Tensor:
    ...


class FrozenPolicy(Protocol):
  """`probs(player, data, legal)`: (R, A) float64 probabilities of `player` at R of its
  information states, given what the policy `reads` of them ("keys": their strings,
  "tensors": their (R, D) float32 tensors, "states": a pyspiel state in each) and their
  legal masks (R, A)."""
  reads: str

  def probs(self, player: int, data, legal: np.ndarray) -> np.ndarray:
    ...


class TableSource:
  """A (S, A) table over `infostate_table(game).keys`."""
  reads = "keys"

  def __init__(self, game_string: str, table: torch.Tensor):
    info = infostate_table(game_string)
    if tuple(table.shape) != tuple(info.legal_mask.shape):
      raise PolicyError(f"policy table shape {tuple(table.shape)} != (information states, "
                        f"actions) {tuple(info.legal_mask.shape)} of {game_string!r}")
    self.index = info.index
    self.table = table.detach().to("cpu", torch.float64).numpy()

  def probs(self, player, keys, legal):
    del player, legal
    try:
      rows = [self.index[k] for k in keys]
    except KeyError as e:
      raise PolicyError(f"policy table has no row for information state {e.args[0]!r}") from e
    return self.table[rows]


class TensorSource:
  """A batched function of information-state tensors and legal masks."""
  reads = "tensors"

  def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    self.fn = fn

  def probs(self, player, tensors, legal):
    del player
    with torch.no_grad():
      out = self.fn(torch.from_numpy(tensors), torch.from_numpy(legal))
    return out.detach().to("cpu", torch.float64).numpy()


class StateSource:
  """An OpenSpiel policy, queried per state."""
  reads = "states"

  def __init__(self, pol, num_actions: int):
    self.pol = pol
    self.num_actions = num_actions

  def probs(self, player, states, legal):
    del player, legal
    out = np.zeros((len(states), self.num_actions))
    for i, s in enumerate(states):
      for a, p in self.pol.action_probabilities(s).items():
        out[i, a] = p
    return out


PolicyLike = Union[torch.Tensor, BatchedPolicy, Callable, os_policy.Policy, pyspiel.Policy]


def frozen_policy(game_string: str, pol: PolicyLike) -> FrozenPolicy:
  """The FrozenPolicy of `pol` (see the module docstring for what `pol` may be)."""
  if isinstance(pol, torch.Tensor):
    return TableSource(game_string, pol)
  if isinstance(pol, BatchedPolicy):
    return TensorSource(pol.batch_probs)
  if isinstance(pol, (os_policy.Policy, pyspiel.Policy)):
    return StateSource(pol, load_game(game_string).num_actions)
  if callable(pol):
    return TensorSource(pol)
  raise PolicyError(f"cannot evaluate a {type(pol).__name__} approximately; pass a (S, A) "
                    "table, a batched callable, an object with batch_probs or an OpenSpiel "
                    "policy")


def checked(probs: np.ndarray, legal: np.ndarray, keys: Sequence[str]) -> np.ndarray:
  """`probs` validated as distributions over the legal actions (PolicyError names the
  information state), clipped at 0 and renormalised."""
  bad = ~np.isfinite(probs).all(1) | (probs < -ATOL).any(1) | (
      np.abs(np.where(legal, 0.0, probs)) > ATOL).any(1) | (np.abs(probs.sum(1) - 1) > ATOL)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise PolicyError(f"policy at information state {keys[i]!r} is not a distribution over "
                      f"its legal actions: {probs[i].tolist()}")
  p = np.where(legal, np.clip(probs, 0.0, None), 0.0)
  return p / p.sum(1, keepdims=True)
