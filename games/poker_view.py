"""Turn-based OpenSpiel states from one player's seat, in words, for a person at a terminal.

`view_for(game_string)` returns a `PokerView` for Kuhn and Leduc and a `GenericView` for any
other turn-based game. A view names the legal actions, shows what the seat may see and, at
the end of a hand, reveals the other seats' private cards.

Poker words (facing a bet = another seat has put in more chips than this one):
- kuhn_poker: cards 0..N are J, Q, K (then A, 5, 6, ...), ante 1 each; action 0 `Pass` is
  check, or fold when facing a bet; action 1 `Bet` is bet, or call when facing a bet.
- leduc_poker: 2(N+1) cards, rank card // 2 (J, Q, K, ...), suit card % 2 (s, h); ante 1,
  100 chips each; action 0 fold, 1 call (check when not facing a bet), 2 raise (bet when
  not facing a bet). The board card is dealt before round 2.
Chip counts come from the state: Kuhn's from its history, Leduc's from the `Money` line of
`str(state)` (at a terminal state, from its parent's and the last action), whose card line is
read for the board card only.
"""

from __future__ import annotations

import re

import pyspiel

from games.spiel import load_game

POKER_GAMES = ("kuhn_poker", "leduc_poker")
_RANKS = "JQKA"
_SUITS = "sh"
LEDUC_STARTING_MONEY = 100
_MONEY = re.compile(r"^Money \([^)]*\): ([\d ]+)$", re.M)
_CARDS = re.compile(r"^Cards \([^)]*\): ([-\d ]+)$", re.M)
_ROUND = re.compile(r"^Round: (\d+)$", re.M)


def _rank_name(r: int) -> str:
  return _RANKS[r] if r < len(_RANKS) else str(r + 2)


def base_name(game_string: str) -> str:
  return re.sub(r"\(.*", "", game_string)


class GenericView:
  """Any turn-based game: OpenSpiel's own action strings and the seat's observation."""

  poker = False

  def __init__(self, game_string: str):
    self.game_string = game_string
    self.sgame = load_game(game_string)
    self.num_players = self.sgame.num_players

  def action_word(self, state: pyspiel.State, action: int) -> str:
    return state.action_to_string(state.current_player(), action)

  def legal_words(self, state: pyspiel.State) -> dict[int, str]:
    """{action id: word} for the player to act."""
    return {a: self.action_word(state, a) for a in state.legal_actions()}

  def describe(self, state: pyspiel.State, seat: int, names: list[str]) -> list[str]:
    """Lines that show what `seat` may see (its observation, else its information state)."""
    if self.sgame.game_type.provides_observation_string:
      text = state.observation_string(seat)
    else:
      text = state.information_state_string(seat)
    return text.splitlines() or [text]

  def history_lines(self, state: pyspiel.State, names: list[str]) -> list[str]:
    moves = []
    s = self.sgame.new_initial_state()
    for a in state.history():
      if not s.is_chance_node():
        moves.append(f"{names[s.current_player()]} {self.action_word(s, a)}")
      s.apply_action(a)
    return ["Moves: " + ", ".join(moves)] if moves else []

  def reveal(self, state: pyspiel.State, seat: int) -> str:
    """What `seat` held, shown once the hand is over (its information state here)."""
    return state.information_state_string(seat)

  def decision_label(self, state: pyspiel.State) -> str:
    return state.information_state_string()


class PokerView(GenericView):
  """Kuhn and Leduc in poker words (see the module docstring)."""

  poker = True

  def __init__(self, game_string: str):
    super().__init__(game_string)
    self.kind = base_name(game_string)
    if self.kind not in POKER_GAMES:
      raise ValueError(f"PokerView covers {POKER_GAMES}, not {game_string!r}")

  # Cards and chips.
  def card_name(self, card: int) -> str:
    if self.kind == "kuhn_poker":
      return _rank_name(card)
    return _rank_name(card // 2) + _SUITS[card % 2]

  def private_card(self, state: pyspiel.State, seat: int) -> int:
    """The seat's card: the seat-th chance outcome (both games deal one card per seat)."""
    return state.history()[seat]

  def board_card(self, state: pyspiel.State):
    if self.kind != "leduc_poker":
      return None
    m = _CARDS.search(str(state))
    public = int(m.group(1).split()[0]) if m else -1
    return public if public >= 0 else None

  def contributions(self, state: pyspiel.State) -> list[int]:
    """Chips each seat has put in so far (ante included)."""
    n = self.num_players
    if self.kind == "kuhn_poker":
      out = [1] * n
      s = self.sgame.new_initial_state()
      for a in state.history():
        if not s.is_chance_node() and a == 1:
          out[s.current_player()] += 1
        s.apply_action(a)
      return out
    if state.is_terminal():  # the Money line shows the chips after the payout
      parent = self.sgame.new_initial_state()
      for a in state.history()[:-1]:
        parent.apply_action(a)
      c = self.contributions(parent)
      if state.history()[-1] == 1:  # a call ends the hand at the showdown
        c[parent.current_player()] = max(c)
      return c
    money = [int(x) for x in _MONEY.search(str(state)).group(1).split()]
    return [LEDUC_STARTING_MONEY - m for m in money]

  def round(self, state: pyspiel.State) -> int:
    """Betting round, from 1."""
    if self.kind == "kuhn_poker":
      return 1
    return int(_ROUND.search(str(state)).group(1))

  # Actions.
  def action_word(self, state: pyspiel.State, action: int) -> str:
    c = self.contributions(state)
    facing = max(c) > c[state.current_player()]
    if self.kind == "kuhn_poker":
      return ("fold" if facing else "check") if action == 0 else ("call" if facing else "bet")
    if action == 0:
      return "fold"
    if action == 1:
      return "call" if facing else "check"
    return "raise" if facing else "bet"

  # Text.
  def describe(self, state: pyspiel.State, seat: int, names: list[str]) -> list[str]:
    card = self.card_name(self.private_card(state, seat))
    board = self.board_card(state)
    shown = "-" if board is None else self.card_name(board)
    lines = [f"Your card: {card}" + ("" if self.kind == "kuhn_poker" else f"   Board: {shown}")]
    c = self.contributions(state)
    lines.append(f"Pot: {sum(c)}   " + ", ".join(f"{names[p]} put in {c[p]}"
                                             for p in range(self.num_players)))
    return lines + self.history_lines(state, names)

  def history_lines(self, state: pyspiel.State, names: list[str]) -> list[str]:
    rounds: dict[int, list[str]] = {}
    s = self.sgame.new_initial_state()
    for a in state.history():
      if not s.is_chance_node():
        rounds.setdefault(self.round(s), []).append(f"{names[s.current_player()]} "
                                                    f"{self.action_word(s, a)}")
      s.apply_action(a)
    if not rounds:
      return ["Betting: none yet"]
    if self.kind == "kuhn_poker":
      return ["Betting: " + ", ".join(rounds[1])]
    return [f"Round {r}: " + ", ".join(w) for r, w in sorted(rounds.items())]

  def reveal(self, state: pyspiel.State, seat: int) -> str:
    return self.card_name(self.private_card(state, seat))

  def decision_label(self, state: pyspiel.State) -> str:
    p = state.current_player()
    c = self.contributions(state)
    board = self.board_card(state)
    where = f"round {self.round(state)}, pot {sum(c)}"
    if board is not None:
      where += f", board {self.card_name(board)}"
    return f"holding {self.reveal(state, p)}, {where}"


def view_for(game_string: str) -> GenericView:
  """PokerView for kuhn_poker / leduc_poker, GenericView otherwise."""
  if base_name(game_string) in POKER_GAMES:
    return PokerView(game_string)
  return GenericView(game_string)
