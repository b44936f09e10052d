"""Enumeration of every information state of a game, cached per game string.

One depth-first walk of the game tree collects each decision state's information-state
string, tensor, legal mask and acting player. With that table a network policy is
tabularised in one batched forward pass (see armac_spiel.evaluation). `games.infostate_table`
serves the compiled tree's table instead when the tree fits (the same rows in the same
order); the walk here is for games beyond it.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from games.spiel import GameError, SpielGame, load_game

# Leduc has 936 information states and Kuhn 12; this limit guards against walking huge trees.
DEFAULT_MAX_HISTORIES = 2_000_000


@dataclasses.dataclass(frozen=True)
class InfoStateTable:
  """All information states of a game, in first-visit DFS order."""
  game_string: str
  keys: tuple[str, ...]          # information_state_string, unique
  tensors: torch.Tensor          # (S, D) float32
  legal_mask: torch.Tensor       # (S, A) bool
  player: torch.Tensor           # (S,) long, the acting player
  num_histories: int             # decision histories visited

  def __len__(self) -> int:
    return len(self.keys)

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {k: i for i, k in enumerate(self.keys)}


def decision_states(game_string: str):
  """Every decision state of the game, depth first (a generator; pyspiel walk)."""
  stack = [load_game(game_string).new_initial_state()]
  while stack:
    state = stack.pop()
    if state.is_terminal():
      continue
    if state.is_chance_node():
      stack.extend(state.child(a) for a, _ in state.chance_outcomes())
      continue
    yield state
    stack.extend(state.child(a) for a in state.legal_actions())


def one_state_per_infostate(game_string: str) -> dict:
  """{information_state_string: a pyspiel state in it} (for per-state Policy objects)."""
  out = {}
  for s in decision_states(game_string):
    out.setdefault(s.information_state_string(), s)
  return out


def _walk(sgame: SpielGame, max_histories: int) -> InfoStateTable:
  keys, rows, masks, players = [], [], [], []
  seen = set()
  histories = 0
  stack = [sgame.new_initial_state()]
  num_actions = sgame.num_actions
  while stack:
    state = stack.pop()
    if state.is_terminal():
      continue
    if state.is_chance_node():
      stack.extend(state.child(a) for a, _ in reversed(state.chance_outcomes()))
      continue
    histories += 1
    if histories > max_histories:
      raise GameError(
          f"game {sgame.game_string!r} has more than {max_histories} decision histories; "
          "exact enumeration of its information states is not possible here.")
    p = state.current_player()
    key = state.information_state_string(p)
    legal = state.legal_actions()
    if key not in seen:
      seen.add(key)
      keys.append(key)
      rows.append(state.information_state_tensor(p))
      m = np.zeros(num_actions, dtype=bool)
      m[legal] = True
      masks.append(m)
      players.append(p)
    stack.extend(state.child(a) for a in reversed(legal))
  return InfoStateTable(
      game_string=sgame.game_string,
      keys=tuple(keys),
      tensors=torch.from_numpy(np.asarray(rows, dtype=np.float32).reshape(len(keys), -1)),
      legal_mask=torch.from_numpy(np.asarray(masks, dtype=bool).reshape(len(keys), -1)),
      player=torch.tensor(players, dtype=torch.long),
      num_histories=histories,
  )


@functools.lru_cache(maxsize=16)
def infostate_table(game_string: str,
                    max_histories: int = DEFAULT_MAX_HISTORIES) -> InfoStateTable:
  """Cached table of all information states of `game_string`."""
  return _walk(load_game(game_string), max_histories)
