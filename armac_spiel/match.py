"""Head-to-head evaluation of two tabular policies A and B in a two-player game.

Exact: A's expected return in seat 0 (A plays player 0, B player 1) and in seat 1, from the
compiled tree (`games.tree.GameTree.expected_returns`) when the game fits it, otherwise from
OpenSpiel's C++ `pyspiel.expected_returns`; the average of the two seats is A's value.

Sampled (duplicate): hand i draws its uniforms once, one row of U_chance (chance events in
order) and U_action (decisions in order), and is played twice with the same rows, A in seat
0 and then A in seat 1. Each draw is an inverse-CDF look-up: the first outcome (or action)
whose cumulative probability exceeds u * total. A's score on hand i is the mean of its two
returns d_i; the estimate is mean(d) with the 95% interval mean(d) +- 1.96 sd(d) / sqrt(N).
On the compiled tree the N hands run in lockstep as array gathers; otherwise one pyspiel
state per hand, with the same uniforms, so both routes play identical hands.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from armac_spiel import evaluation
from games import infostate_table, load_game
from games import tree as tree_lib
from games.tree import CHANCE, DECISION

Z95 = 1.959963984540054


def seat_table(game_string: str, tables: list[torch.Tensor]) -> torch.Tensor:
  """One (S, A) table in which player p's information states follow tables[p]."""
  info = infostate_table(game_string)
  joint = torch.zeros(info.legal_mask.shape, dtype=torch.float64)
  for p, t in enumerate(tables):
    rows = info.player == p
    joint[rows] = t.to(torch.float64)[rows]
  return joint


def _tree(game_string: str):
  return tree_lib.compile_tree(game_string) if tree_lib.tree_fits(game_string) else None


def exact_values(game_string: str, a: torch.Tensor, b: torch.Tensor) -> dict:
  """A's exact expected return in each seat and on average, and the method used."""
  load_game(game_string).require_two_player_zero_sum("match")
  tree = _tree(game_string)
  if tree is not None:
    v0 = float(tree.expected_returns(seat_table(game_string, [a, b]))[0])
    v1 = float(tree.expected_returns(seat_table(game_string, [b, a]))[1])
    method = "tree"
  else:
    v0 = evaluation.expected_returns(game_string, [a, b])[0]
    v1 = evaluation.expected_returns(game_string, [b, a])[1]
    method = "pyspiel"
  return {"a_seat0": v0, "a_seat1": v1, "mean": 0.5 * (v0 + v1), "method": method}


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
  """(B,) index of the first column whose cdf exceeds u * total (cdf (B, K) non-decreasing)."""
  total = cdf[:, -1]
  key = np.minimum(u * total, np.nextafter(total, 0.0))
  return np.minimum((cdf <= key[:, None]).sum(1), cdf.shape[1] - 1)


def uniforms(game_string: str, hands: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(U_chance (N, C), U_action (N, T)) for `hands` hands, from one seeded generator."""
  game = load_game(game_string).game
  rng = np.random.default_rng(seed)
  u_chance = rng.random((hands, max(game.max_chance_nodes_in_history(), 1)))
  u_action = rng.random((hands, max(game.max_game_length(), 1)))
  return u_chance, u_action


def play_tree(tree, joint: torch.Tensor, u_chance: np.ndarray,
              u_action: np.ndarray) -> np.ndarray:
  """(N, players) returns of N hands played in lockstep on the compiled tree."""
  kind = tree.kind.numpy()
  children = tree.children.numpy()
  chance_cdf = np.cumsum(tree.chance_prob.numpy(), 1)
  info = tree.infostate.numpy()
  pol = joint.to(torch.float64).numpy() * tree.info_legal.numpy()
  pol_cdf = np.cumsum(pol, 1)
  n = u_chance.shape[0]
  node = np.zeros(n, dtype=np.int64)
  kc = np.zeros(n, dtype=np.int64)
  ka = np.zeros(n, dtype=np.int64)
  while True:
    k = kind[node]
    ch = np.flatnonzero(k == CHANCE)
    if ch.size:
      slot = _draw(chance_cdf[node[ch]], u_chance[ch, kc[ch]])
      node[ch] = children[node[ch], slot]
      kc[ch] += 1
    dc = np.flatnonzero(k == DECISION)
    if dc.size:
      act = _draw(pol_cdf[info[node[dc]]], u_action[dc, ka[dc]])
      node[dc] = children[node[dc], act]
      ka[dc] += 1
    if not ch.size and not dc.size:
      break
  return tree.returns.numpy()[node]


def play_pyspiel(game_string: str, joint: torch.Tensor, u_chance: np.ndarray,
                 u_action: np.ndarray) -> np.ndarray:
  """(N, players) returns of N hands played one pyspiel state at a time (same draws)."""
  sgame = load_game(game_string)
  index = infostate_table(game_string).index
  pol = joint.to(torch.float64).numpy() * infostate_table(game_string).legal_mask.numpy()
  pol_cdf = np.cumsum(pol, 1)
  out = np.zeros((u_chance.shape[0], sgame.num_players))
  for i in range(u_chance.shape[0]):
    s = sgame.new_initial_state()
    kc = ka = 0
    while not s.is_terminal():
      if s.is_chance_node():
        outcomes, probs = zip(*s.chance_outcomes())
        slot = _draw(np.cumsum(probs)[None], u_chance[i:i + 1, kc])[0]
        s.apply_action(outcomes[slot])
        kc += 1
      else:
        row = pol_cdf[index[s.information_state_string()]]
        s.apply_action(int(_draw(row[None], u_action[i:i + 1, ka])[0]))
        ka += 1
    out[i] = s.returns()
  return out


def _mean_ci(x: np.ndarray) -> dict:
  n = x.size
  mean = float(x.mean())
  half = Z95 * float(x.std(ddof=1)) / math.sqrt(n) if n >= 2 else float("inf")
  return {"mean": mean, "ci95": [mean - half, mean + half], "half_width": half}


def sampled_match(game_string: str, a: torch.Tensor, b: torch.Tensor, hands: int,
                  seed: int, backend: str = "auto") -> dict:
  """Duplicate match of `hands` hands in each seat; A's mean return with 95% intervals."""
  load_game(game_string).require_two_player_zero_sum("match")
  if hands < 1:
    raise ValueError(f"hands must be >= 1, got {hands}")
  if backend not in ("auto", "tree", "pyspiel"):
    raise ValueError(f"backend must be auto, tree or pyspiel, got {backend!r}")
  u_chance, u_action = uniforms(game_string, hands, seed)
  tree = _tree(game_string) if backend != "pyspiel" else None
  if backend == "tree" and tree is None:
    raise ValueError(f"backend='tree': {game_string!r} does not fit the compiled tree")
  if tree is not None:
    r0 = play_tree(tree, seat_table(game_string, [a, b]), u_chance, u_action)[:, 0]
    r1 = play_tree(tree, seat_table(game_string, [b, a]), u_chance, u_action)[:, 1]
  else:
    r0 = play_pyspiel(game_string, seat_table(game_string, [a, b]), u_chance, u_action)[:, 0]
    r1 = play_pyspiel(game_string, seat_table(game_string, [b, a]), u_chance, u_action)[:, 1]
  return {"hands": hands, "seed": seed, "backend": "tree" if tree is not None else "pyspiel",
          "a_seat0": _mean_ci(r0), "a_seat1": _mean_ci(r1), **_mean_ci(0.5 * (r0 + r1))}
