"""Per-state poker features for scheduler state keys (kuhn, leduc, universal_poker).

All features are public or the acting player's own, so each is fixed by the acting player's
information-state string; `poker_features` (pyspiel states) reads that string and so does
`features_from_infostate_strings` (the learner's info-state keys). How each is read:

- kuhn_poker (`players=N`), string = card then actions, e.g. `'0pb'` (p=pass, b=bet).
  Ante 1 and starting chips 2 per player, so a bet commits the last chip.
  round = 0; player = (#actions) % N (OpenSpiel's rule); position = player (player 0 acts
  first); pot = N + #b; stack = 1 - [the player bet before], its bets being the actions at
  indices i with i % N == player; total chips 2N, starting stack 2.
- leduc_poker (any `players=`), string like
  `[Observer: 0][Private: 3][Round 2][Player: 0][Pot: 6][Money: 97 97][Public: 0]...`.
  round = `Round` - 1 (OpenSpiel counts from 1); player = `Player`; stack = `Money`[player];
  pot = sum(100 - `Money`), equal to `Pot` (100 starting chips each); total chips 100N;
  first player of every round = `starting_player` game parameter (default 0).
- universal_poker, string like `[Round 1][Player: 1][Pot: 1800][Money: 300 900]...`.
  round = `Round` (from 0); player = `Player`; stack = `Money`[player];
  pot = sum(`stack` parameter - `Money`), the chips committed (OpenSpiel's `Pot` field is
  max-spend x active players, which differs when blinds differ; the `potSize` parameter is
  ignored); total chips = sum of `stack`; first player of round r = `firstPlayer`[r] - 1.

position = (player - first player of the round) mod N, i.e. seat relative to the round's
designated first actor (folded seats are not skipped).
pot_bucket = min(n-1, floor(n * pot / total_chips)),
stack_bucket = min(n-1, floor(n * stack / starting_stack[player])), n = `n_buckets` (4).
Leduc pots never pass 26 of 200 chips, so there both buckets are constant; `scale="reachable"`
measures instead against what can be committed: max_commit = -game.min_utility() (leduc 13;
kuhn 2 and universal_poker `stack`, the same as "total"), pot over N * max_commit and the
stack's remaining commit capacity, stack - (starting_stack - max_commit), over max_commit.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Sequence

import pyspiel
import torch

from games.spiel import SpielGame, load_game

SUPPORTED_GAMES = ("kuhn_poker", "leduc_poker", "universal_poker")
LEDUC_STARTING_MONEY = 100
KUHN_STARTING_CHIPS = 2

_ROUND = re.compile(r"\[Round (\d+)\]")
_PLAYER = re.compile(r"\[Player: (\d+)\]")
_MONEY = re.compile(r"\[Money: ([\d ]*)\]")
SCALES = ("total", "reachable")
_KUHN = re.compile(r"^(\d+)([pb]*)$")


class PokerFeatures(NamedTuple):
  """(B,) tensors: long except pot and stack (float32)."""
  round: torch.Tensor
  player: torch.Tensor
  position: torch.Tensor
  pot: torch.Tensor
  stack: torch.Tensor
  pot_bucket: torch.Tensor
  stack_bucket: torch.Tensor


class PokerSpec(NamedTuple):
  """The constants of a poker game that the features need."""
  kind: str                        # kuhn_poker | leduc_poker | universal_poker
  num_players: int
  num_rounds: int
  first_player: tuple[int, ...]    # per round, 0-indexed
  starting_stack: tuple[int, ...]  # per player
  total_chips: int
  max_commit: tuple[int, ...]      # per player, chips one player can put in


def _ints(value, n: int) -> tuple[int, ...]:
  vals = tuple(int(v) for v in str(value).split())
  return vals * n if len(vals) == 1 else vals[:n]


@functools.lru_cache(maxsize=32)
def poker_spec(game_string: str) -> PokerSpec:
  """Game constants; ValueError naming the game when it is not a supported poker game."""
  game = load_game(game_string).game
  name = game.get_type().short_name
  params = game.get_parameters()
  n = game.num_players()
  if name == "kuhn_poker":
    chips = (KUHN_STARTING_CHIPS,) * n
    return PokerSpec(name, n, 1, (0,), chips, sum(chips), chips)
  if name == "leduc_poker":
    first = int(params.get("starting_player", 0))
    chips = (LEDUC_STARTING_MONEY,) * n
    commit = (int(-game.min_utility()),) * n
    return PokerSpec(name, n, 2, (first, first), chips, sum(chips), commit)
  if name == "universal_poker":
    rounds = int(params["numRounds"])
    first = tuple(p - 1 for p in _ints(params["firstPlayer"], rounds))
    stack = _ints(params["stack"], n)
    return PokerSpec(name, n, rounds, first, stack, sum(stack), stack)
  raise ValueError(f"poker features support {', '.join(SUPPORTED_GAMES)}; got game "
                   f"{name!r} (from {game_string!r})")


def _parse(spec: PokerSpec, key: str) -> tuple[int, int, float, float]:
  """(round, player, pot, stack) of one information-state string."""
  if spec.kind == "kuhn_poker":
    m = _KUHN.match(key)
    if m is None:
      raise ValueError(f"not a kuhn_poker information-state string: {key!r}")
    acts = m.group(2)
    n = spec.num_players
    player = len(acts) % n
    own_bet = "b" in acts[player::n]
    return 0, player, float(n + acts.count("b")), float(1 - own_bet)
  r, p, money = _ROUND.search(key), _PLAYER.search(key), _MONEY.search(key)
  if r is None or p is None or money is None:
    raise ValueError(f"not a {spec.kind} information-state string: {key!r}")
  rnd = int(r.group(1)) - (spec.kind == "leduc_poker")
  player = int(p.group(1))
  chips = [int(v) for v in money.group(1).split()]
  pot = sum(s - c for s, c in zip(spec.starting_stack, chips))
  return rnd, player, float(pot), float(chips[player])


def features_from_infostate_strings(game_string: str, keys: Sequence[str],
                                    n_buckets: int = 4, scale: str = "total") -> PokerFeatures:
  """Features of acting-player information-state strings of `game_string`."""
  if n_buckets < 1:
    raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {'|'.join(SCALES)}, got {scale!r}")
  spec = poker_spec(game_string)
  rows = [_parse(spec, k) for k in keys]
  rnd = torch.tensor([r[0] for r in rows], dtype=torch.long)
  player = torch.tensor([r[1] for r in rows], dtype=torch.long)
  pot = torch.tensor([r[2] for r in rows], dtype=torch.float32)
  stack = torch.tensor([r[3] for r in rows], dtype=torch.float32)
  first = torch.tensor(spec.first_player, dtype=torch.long)[rnd]
  position = (player - first) % spec.num_players
  start = torch.tensor(spec.starting_stack, dtype=torch.float32)[player]
  if scale == "total":
    pot_frac, stack_frac = pot / spec.total_chips, stack / start
  else:
    commit = torch.tensor(spec.max_commit, dtype=torch.float32)
    pot_frac = pot / commit.sum()
    stack_frac = (stack - (start - commit[player])) / commit[player]
  pot_bucket = torch.floor(n_buckets * pot_frac).long().clamp(0, n_buckets - 1)
  stack_bucket = torch.floor(n_buckets * stack_frac).long().clamp(0, n_buckets - 1)
  return PokerFeatures(rnd, player, position, pot, stack, pot_bucket, stack_bucket)


def poker_features(sgame: SpielGame | str, states: Sequence[pyspiel.State],
                   n_buckets: int = 4, scale: str = "total") -> PokerFeatures:
  """Features of decision states, read from the acting player's information-state string."""
  if isinstance(sgame, str):
    sgame = load_game(sgame)
  keys = []
  for s in states:
    if s.is_terminal() or s.is_chance_node():
      kind = "terminal" if s.is_terminal() else "chance"
      raise ValueError(f"poker features need decision states, got a {kind} state")
    keys.append(s.information_state_string(s.current_player()))
  return features_from_infostate_strings(sgame.game_string, keys, n_buckets, scale)
