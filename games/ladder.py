"""The ladder of games: two-player zero-sum OpenSpiel games with information-state tensors,
small enough for exact exploitability, from Kuhn poker up to about ten million nodes.

One place defines it; tests, benchmarks and `python -m experiments.ladder` read it. Each
rung names its game string and its family, so that a result table can say what kind of game
each row is (poker, dice, bidding, board, allocation). `LADDER` holds the rungs used for
training studies; `LARGE` the rungs whose trees hold up to about 10^7 nodes, for exact
evaluation at scale; `BEYOND` games too large for exact evaluation.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Rung:
  """One game of the ladder."""
  name: str       # short label for tables and directory names
  game: str       # OpenSpiel game string
  family: str     # poker | dice | bidding | board | allocation


def goofspiel(num_cards: int) -> str:
  """Imperfect-information goofspiel, turned turn-based, win/loss returns."""
  return ("turn_based_simultaneous_game(game=goofspiel(imp_info=True,num_cards="
          f"{num_cards},points_order=descending,returns_type=win_loss))")


def leduc_like(num_ranks: int, num_suits: int, max_raises: str = "2 2") -> str:
  """Leduc's rules (one hole card, one board card, limit betting, two rounds) in
  `universal_poker`, with a deck of num_ranks x num_suits cards (and, optionally, other
  raise caps per round)."""
  return ("universal_poker(betting=limit,numPlayers=2,numRounds=2,blind=1 1,raiseSize=2 4,"
          f"firstPlayer=1 1,maxRaises={max_raises},"
          f"numSuits={num_suits},numRanks={num_ranks},numHoleCards=1,numBoardCards=0 1)")


def leduc3_like(num_ranks: int, num_suits: int) -> str:
  """Three betting rounds of limit poker in `universal_poker`: one hole card, then one
  board card before each of the second and third rounds."""
  return ("universal_poker(betting=limit,numPlayers=2,numRounds=3,blind=1 1,"
          "raiseSize=2 4 4,firstPlayer=1 1 1,maxRaises=2 2 2,"
          f"numSuits={num_suits},numRanks={num_ranks},numHoleCards=1,numBoardCards=0 1 1)")


LADDER: tuple[Rung, ...] = (
    Rung("kuhn", "kuhn_poker", "poker"),
    Rung("leduc", "leduc_poker", "poker"),
    Rung("leduc_5x2", leduc_like(5, 2), "poker"),
    Rung("liars_dice_1", "liars_dice(numdice=1)", "dice"),
    Rung("goofspiel_4", goofspiel(4), "bidding"),
    Rung("goofspiel_5", goofspiel(5), "bidding"),
    Rung("dark_hex_2x3", "dark_hex(num_rows=2,num_cols=3)", "board"),
    Rung("blotto_6x3", "turn_based_simultaneous_game(game=blotto(coins=6,fields=3))",
         "allocation"),
)

LARGE: tuple[Rung, ...] = (
    Rung("goofspiel_6", goofspiel(6), "bidding"),
    Rung("leduc_13x2", leduc_like(13, 2), "poker"),
    Rung("leduc_13x4", leduc_like(13, 4), "poker"),
    Rung("leduc_12x4_3r", leduc_like(12, 4, "3 2"), "poker"),  # 10,943,905 nodes
)


# Games beyond exact evaluation (about 10^8 and 3 x 10^9 histories by Knuth estimates of
# games.tree): evaluated by sampled play only (armac_spiel.approx).
BEYOND: tuple[Rung, ...] = (
    Rung("leduc3_6x4", leduc3_like(6, 4), "poker"),
    Rung("liars_dice_2", "liars_dice(numdice=2)", "dice"),
)


def rung(name: str) -> Rung:
  """The rung called `name` (LADDER, LARGE or BEYOND); ValueError lists the names."""
  for r in LADDER + LARGE + BEYOND:
    if r.name == name:
      return r
  raise ValueError(f"unknown ladder rung {name!r}; known: "
                   f"{[r.name for r in LADDER + LARGE + BEYOND]}")
