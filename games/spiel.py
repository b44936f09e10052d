"""One entry point for any OpenSpiel game string, with validation and batched encoders.

`load_game("leduc_poker")` returns a cached `SpielGame`: the pyspiel game, its sizes, and
batched encoders that turn lists of pyspiel states into torch tensors:

- information-state tensors, (B, D): `state.information_state_tensor(player)`;
- history tensors for a centralised critic, (B, N*D): every player's information-state
  tensor concatenated in player order (perfect information about the history);
- legal-action masks, (B, A), bool.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
import pyspiel
import torch


class GameError(ValueError):
  """A game string that this toolkit cannot use; the message names game and reason."""


@dataclasses.dataclass(frozen=True)
class GameSizes:
  num_players: int
  num_actions: int
  info_state_size: int
  history_size: int
  max_game_length: int


class SpielGame:
  """A validated OpenSpiel game with batched tensor encoders."""

  def __init__(self, game_string: str):
    if not isinstance(game_string, str) or not game_string.strip():
      raise GameError(f"game_name must be a non-empty OpenSpiel game string, got {game_string!r}")
    try:
      game = pyspiel.load_game(game_string)
    except pyspiel.SpielError as e:
      reason = str(e).split(". Available games", 1)[0].strip()
      raise GameError(
          f"unknown or malformed game {game_string!r}: {reason}. "
          "See pyspiel.registered_names() for the games OpenSpiel knows.") from e
    gtype = game.get_type()
    if gtype.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
      raise GameError(
          f"game {game_string!r} has simultaneous moves ({gtype.dynamics}); only sequential "
          "(turn-based) games are supported. Wrap it with "
          "pyspiel.convert_to_turn_based or load 'turn_based_simultaneous_game(game=...)'.")
    if not gtype.provides_information_state_tensor:
      raise GameError(
          f"game {game_string!r} does not provide an information-state tensor, which the "
          "regret, actor and critic networks need.")
    self.game_string = game_string
    self.game = game
    self.game_type = gtype
    d = game.information_state_tensor_shape()
    if len(d) != 1:
      raise GameError(f"game {game_string!r} has a {len(d)}-D information-state tensor {d}; "
                      "only flat (1-D) tensors are supported.")
    n = game.num_players()
    self.sizes = GameSizes(
        num_players=n,
        num_actions=game.num_distinct_actions(),
        info_state_size=d[0],
        history_size=n * d[0],
        max_game_length=game.max_game_length(),
    )

  # Sizes, as attributes for brevity.
  @property
  def num_players(self) -> int:
    return self.sizes.num_players

  @property
  def num_actions(self) -> int:
    return self.sizes.num_actions

  @property
  def info_state_size(self) -> int:
    return self.sizes.info_state_size

  @property
  def history_size(self) -> int:
    return self.sizes.history_size

  @property
  def is_two_player_zero_sum(self) -> bool:
    return (self.num_players == 2 and
            self.game_type.utility == pyspiel.GameType.Utility.ZERO_SUM)

  def require_two_player_zero_sum(self, what: str = "exploitability") -> None:
    if not self.is_two_player_zero_sum:
      raise GameError(
          f"{what} is defined for two-player zero-sum games only; {self.game_string!r} has "
          f"{self.num_players} players and utility {self.game_type.utility}. "
          "Use nash_conv for it instead.")

  def new_initial_state(self) -> pyspiel.State:
    return self.game.new_initial_state()

  # Batched encoders. The per-state loop is over pyspiel objects, which expose no batch API.
  def info_state_tensors(self, states: Sequence[pyspiel.State],
                         player: int | None = None) -> torch.Tensor:
    """(B, D) float32: each state's information-state tensor for `player` (default: to act)."""
    if not states:
      return torch.zeros((0, self.info_state_size))
    if player is None:
      rows = [s.information_state_tensor() for s in states]
    else:
      rows = [s.information_state_tensor(player) for s in states]
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))

  def history_tensors(self, states: Sequence[pyspiel.State]) -> torch.Tensor:
    """(B, N*D) float32: all players' information-state tensors, concatenated."""
    if not states:
      return torch.zeros((0, self.history_size))
    n = self.num_players
    rows = [sum((s.information_state_tensor(p) for p in range(n)), []) for s in states]
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))

  def legal_masks(self, states: Sequence[pyspiel.State]) -> torch.Tensor:
    """(B, A) bool: True where the action is legal for the player to act."""
    mask = np.zeros((len(states), self.num_actions), dtype=bool)
    for i, s in enumerate(states):
      mask[i, s.legal_actions()] = True
    return torch.from_numpy(mask)

  def __repr__(self) -> str:
    return f"SpielGame({self.game_string!r}, {self.sizes})"


@functools.lru_cache(maxsize=32)
def load_game(game_string: str) -> SpielGame:
  """Cached `SpielGame` for an OpenSpiel game string; raises `GameError` on bad input."""
  return SpielGame(game_string)
