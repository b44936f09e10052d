"""OpenSpiel game layer: validation, sizes, batched encoders, samplers, enumeration."""

from games.spiel import GameError, GameSizes, SpielGame, load_game
from games.infostates import InfoStateTable, infostate_table
from games.sampler import (LockstepSampler, PolicyFn, Sampler, StepBatch, TablePolicy,
                           Trajectories, sample_actions)
from games import tree  # the compiled-tree backend (small games)

SAMPLER_BACKENDS = ("auto", "pyspiel", "tree")


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
