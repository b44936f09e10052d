"""A duplicate match of two policies by sampled play, for games of any size.

The same as armac_spiel.match.sampled_match (hand i is played with A in seat 0 and then in
seat 1 on the same uniforms; A's score is the mean of its two returns), but the policies
are frozen policies (armac_spiel.approx.frozen: tables, network policies, solver policies)
played through pyspiel by HistoryCache, so the game need not be enumerated.
"""

from __future__ import annotations

import numpy as np

from armac_spiel.approx.budget import half_width
from armac_spiel.approx.frozen import PolicyLike, frozen_policy
from armac_spiel.approx.histories import HistoryCache

CHUNK = 65536


def _mean_ci(x: np.ndarray) -> dict:
  mean, half = float(x.mean()), half_width(x)
  return {"mean": mean, "ci95": [mean - half, mean + half], "half_width": half}


def sampled_match(game_string: str, a: PolicyLike, b: PolicyLike, hands: int,
                  seed: int) -> dict:
  """A's mean return per hand in each seat and on average, with 95% intervals."""
  if hands < 1:
    raise ValueError(f"hands must be >= 1, got {hands}")
  pa, pb = frozen_policy(game_string, a), frozen_policy(game_string, b)
  seat0, seat1 = HistoryCache(game_string, [pa, pb]), HistoryCache(game_string, [pb, pa])
  rng = np.random.default_rng([seed, 0x4A7])
  r0, r1 = [], []
  done = 0
  while done < hands:
    n = min(CHUNK, hands - done)
    u = seat0.uniforms(n, rng)
    r0.append(seat0.play([None, None], n, rng, uniforms=u).returns[:, 0])
    r1.append(seat1.play([None, None], n, rng, uniforms=u).returns[:, 1])
    done += n
  x0, x1 = np.concatenate(r0), np.concatenate(r1)
  return {"hands": hands, "seed": seed, "backend": "approx", "a_seat0": _mean_ci(x0),
          "a_seat1": _mean_ci(x1), **_mean_ci(0.5 * (x0 + x1))}
