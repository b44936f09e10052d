"""OpenSpiel game layer: validation, sizes, batched encoders, samplers, enumeration."""

import functools

from games.spiel import GameError, GameSizes, SpielGame, load_game
from games import infostates
from games.infostates import DEFAULT_MAX_HISTORIES, InfoStateTable
from games.sampler import (LockstepSampler, PolicyFn, Sampler, StepBatch, TablePolicy,
                           Trajectories, sample_actions)
from games import tree  # the compiled-tree backend (games up to about 10^7 nodes)

SAMPLER_BACKENDS = ("auto", "pyspiel", "tree")


@functools.lru_cache(maxsize=16)
def infostate_table(game_string: str,
                    max_histories: int = DEFAULT_MAX_HISTORIES) -> InfoStateTable:
  """Every information state of `game_string` (cached): the compiled tree's table when the
  tree fits (games.tree.GameTree.table: the same rows in the same order, without walking
  the game again, and at any size the tree holds), else one walk of the game
  (games.infostates.infostate_table, at most `max_histories` decision histories)."""
  if tree.tree_fits(game_string):
    return tree.compile_tree(game_string).table
  return infostates.infostate_table(game_string, max_histories)


def make_sampler(game_string: str, seed: int, backend: str = "auto") -> Sampler:
  """Builds a sampler; `auto` picks the compiled-tree backend when the tree is small."""
  if backend not in SAMPLER_BACKENDS:
    raise ValueError(f"sampler must be one of {SAMPLER_BACKENDS}, got {backend!r}")
  sgame = load_game(game_string)
  if backend == "pyspiel":
    return LockstepSampler(sgame, seed)
  if backend == "tree":
    return tree.TreeSampler(sgame, seed)
  if tree.tree_fits(game_string):
    return tree.TreeSampler(sgame, seed)
  return LockstepSampler(sgame, seed)
