"""One entry point for exploitability, exact or approximate: `estimate(game, policy, method,
budget, seed)`.

- exact: the compiled tree or OpenSpiel's C++ evaluator (armac_spiel.evaluation); needs
  the game's information states enumerated; ci95 is 0.
- learned_br: a best response learned from sampled episodes (armac_spiel.approx.learned_br).
- lbr: local best response, poker only (armac_spiel.approx.lbr).
Both approximations are lower bounds up to their 95% intervals. `auto` picks exact when
the compiled tree holds the game, else learned_br.
"""

from __future__ import annotations

import time
from typing import Optional

import torch

from armac_spiel import evaluation
from armac_spiel.approx.budget import Budget, Estimate
from armac_spiel.approx.frozen import PolicyLike, frozen_policy
from armac_spiel.approx.histories import HistoryCache
from armac_spiel.approx.lbr import check_applies, lbr
from armac_spiel.approx.learned_br import LearnedBRConfig, learned_br
from games import load_game, tree

METHODS = ("exact", "learned_br", "lbr")
RUN_METHODS = ("auto",) + METHODS


def check_method(method: str, game_string: str, flag: str = "--method") -> None:
  """ValueError naming `flag` unless `method` is known and applies to the game."""
  if method not in RUN_METHODS:
    raise ValueError(f"{flag}={method!r}: must be one of {RUN_METHODS}")
  if method == "lbr":
    check_applies(game_string)


def resolve_method(method: str, game_string: str) -> str:
  """`auto` -> exact when the compiled tree holds the game, else learned_br."""
  check_method(method, game_string)
  if method != "auto":
    return method
  return "exact" if tree.tree_fits(game_string) else "learned_br"


def uniform_policy(info_state: torch.Tensor, legal_mask: torch.Tensor) -> torch.Tensor:
  """The uniform policy as a batched callable (needs no enumeration of the game)."""
  del info_state
  m = legal_mask.double()
  return m / m.sum(1, keepdim=True)


def estimate(game_string: str, policy: PolicyLike, method: str = "learned_br",
             budget: Optional[Budget] = None, seed: int = 0,
             config: LearnedBRConfig = LearnedBRConfig(),
             cache: Optional[HistoryCache] = None) -> Estimate:
  """Exploitability of `policy` (played by both players) by `method` (see module doc).

  `cache`: a HistoryCache of this game kept from an earlier estimate (e.g. of the same
  run), whose histories are reused; it then plays against `policy`."""
  method = resolve_method(method, game_string)
  load_game(game_string).require_two_player_zero_sum("exploitability")
  if method == "exact":
    t0 = time.perf_counter()
    expl = evaluation.fast_exploitability(game_string, policy)[0]
    dt = time.perf_counter() - t0
    return Estimate(method="exact", exploitability=float(expl), ci95=0.0,
                    br_values=None, br_ci95=None,
                    train_episodes=0, eval_episodes=0, seconds=dt, train_s=0.0, eval_s=dt)
  budget = budget or Budget()
  pol = frozen_policy(game_string, policy)
  if cache is None:
    cache = HistoryCache(game_string, [pol, pol])
  else:
    if cache.game_string != game_string:
      raise ValueError(f"cache is for {cache.game_string!r}, not {game_string!r}")
    cache.set_policies([pol, pol])
  if method == "lbr":
    return lbr(cache, game_string, budget, seed)
  return learned_br(cache, budget, seed, config)
