"""Play a policy at the terminal: you take one seat, the policy every other seat.

  python -m experiments.play --game_name=leduc_poker --policy=cfr_plus:100 --seat=alternate
  python -m experiments.play --game_name=kuhn_poker --policy=runs/x --hands=10 --show_probs

--policy is any spec of `armac_spiel.policy_io.resolve_policy` (uniform, always_call,
always_raise, cfr_plus:N, RUN_DIR, RUN_DIR:mixed, FILE.json). Kuhn and Leduc are shown in
poker words (games.poker_view); any other turn-based game with OpenSpiel's action strings.
Type an action's word (or OpenSpiel's action string), its action id or a unique prefix;
`q` or Ctrl-D ends the game. Chance and the bot's draws are seeded by --seed. After the
summary, the last line is one JSON object: every finished hand's seat, OpenSpiel action
history and your return.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch
from absl import app, flags

from armac_spiel import policy_io
from games import GameError, infostate_table, load_game
from games.poker_view import view_for

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (turn-based).")
flags.DEFINE_string("policy", "cfr_plus:100", "The bot's policy: " +
                    " | ".join(policy_io.SPEC_FORMS))
flags.DEFINE_string("seat", "alternate", "Your seat: 0, 1, ... or 'alternate' (you move one "
                    "seat on every hand).")
flags.DEFINE_integer("hands", 0, "Hands to play; 0 plays until `q` or Ctrl-D.")
flags.DEFINE_integer("seed", 0, "Seed of the cards and of the bot's draws.")
flags.DEFINE_bool("show_probs", False, "After each hand, show the bot's action probabilities "
                  "at each of its decisions.")

QUIT = ("q", "quit", "exit")


class Quit(Exception):
  """The person asked to stop (q or end of input)."""


def parse_action(text: str, words: dict[int, str], state) -> int | None:
  """The legal action named by `text` (word, unique prefix, OpenSpiel string or id)."""
  t = text.strip().lower()
  if not t:
    return None
  exact = [a for a, w in words.items() if w.lower() == t or
           state.action_to_string(state.current_player(), a).lower() == t]
  if len(exact) == 1:
    return exact[0]
  if t.lstrip("-").isdigit():
    a = int(t)
    return a if a in words else None
  prefix = [a for a, w in words.items() if w.lower().startswith(t)]
  return prefix[0] if len(prefix) == 1 else None


def ask(prompt: str, words: dict[int, str], state, out) -> int:
  legal = ", ".join(f"{w} ({a})" for a, w in words.items())
  while True:
    out.write(f"{prompt} [{', '.join(words.values())}]: ")
    out.flush()
    line = sys.stdin.readline()
    if not line:
      out.write("\n")
      raise Quit
    if not sys.stdin.isatty():
      out.write(line if line.endswith("\n") else line + "\n")  # echo piped input
    if line.strip().lower() in QUIT:
      raise Quit
    a = parse_action(line, words, state)
    if a is not None:
      return a
    out.write(f"  {line.strip()!r} is not a legal action here; legal actions: {legal}\n")


def score_line(results: list[float], unit: str = "chips") -> str:
  n = len(results)
  total = sum(results)
  if n < 2:
    return f"score {total:+g} {unit} after {n} hand{'s' if n != 1 else ''}"
  se = float(np.std(results, ddof=1)) / math.sqrt(n)
  return (f"score {total:+g} {unit} after {n} hands: {total / n:+.3f} per hand "
          f"(standard error {se:.3f})")


def sample(probs: np.ndarray, u: float) -> int:
  """Inverse-CDF draw over the action axis (zero-probability actions are never drawn)."""
  cdf = np.cumsum(probs)
  key = min(u * cdf[-1], np.nextafter(cdf[-1], 0.0))
  return int(min(np.searchsorted(cdf, key, side="right"), len(cdf) - 1))


def play(game_string: str, table: torch.Tensor, seat_flag: str, hands: int, seed: int,
         show_probs: bool, policy_name: str, out=sys.stdout) -> list[dict]:
  """Plays hands at the terminal; returns each finished hand's seat, history and return."""
  sgame = load_game(game_string)
  n = sgame.num_players
  view = view_for(game_string)
  index = infostate_table(game_string).index
  probs = table.numpy()
  chance_rng = np.random.default_rng([seed, 0])
  bot_rng = np.random.default_rng([seed, 1])
  unit = "chips" if view.poker else "points"
  results, record = [], []
  hand = 0
  try:
    while not hands or hand < hands:
      seat = hand % n if seat_flag == "alternate" else int(seat_flag)
      names = ["bot" if p != seat else "you" for p in range(n)]
      if n > 2:
        names = [f"bot{p}" if p != seat else "you" for p in range(n)]
      out.write(f"\n=== Hand {hand + 1}{f' of {hands}' if hands else ''}: you are player "
                f"{seat} ===\n")
      state = sgame.new_initial_state()
      bot_moves = []
      while not state.is_terminal():
        if state.is_chance_node():
          outcomes, p = zip(*state.chance_outcomes())
          state.apply_action(outcomes[sample(np.asarray(p), chance_rng.random())])
          continue
        player = state.current_player()
        words = view.legal_words(state)
        if player == seat:
          for line in view.describe(state, seat, names):
            out.write(f"  {line}\n")
          a = ask("Your move", words, state, out)
        else:
          row = probs[index[state.information_state_string(player)]]
          a = sample(row, bot_rng.random())
          bot_moves.append((player, view.decision_label(state),
                            {w: float(row[b]) for b, w in words.items()}, words[a]))
          out.write(f"  {names[player]}: {words[a]}\n")
        state.apply_action(a)
      ret = state.returns()
      mine = float(ret[seat])
      results.append(mine)
      record.append({"seat": seat, "history": state.history(), "return": mine})
      shown = ", ".join(f"{names[p]} held {view.reveal(state, p)}" for p in range(n))
      for line in view.history_lines(state, names):
        out.write(f"  {line}\n")
      verb = "won" if mine > 0 else "lost" if mine < 0 else "tied,"
      out.write(f"Hand {hand + 1}: you {verb} {abs(mine):g} {unit} ({shown}).\n")
      if show_probs:
        for p, label, dist, chosen in bot_moves:
          d = ", ".join(f"{w} {q:.3f}" for w, q in dist.items())
          out.write(f"  {names[p]} {label}: {d} -> {chosen}\n")
      out.write(f"  {score_line(results, unit)}\n")
      hand += 1
  except Quit:
    pass
  out.write(f"\nSummary against {policy_name}: {score_line(results, unit)}.\n")
  return record


def main(argv):
  del argv
  torch.set_num_threads(1)
  try:
    sgame = load_game(FLAGS.game_name)
    seats = [str(p) for p in range(sgame.num_players)]
    if FLAGS.seat != "alternate" and FLAGS.seat not in seats:
      raise ValueError(f"--seat must be one of {', '.join(seats)} or alternate, got "
                       f"{FLAGS.seat!r}")
    if FLAGS.hands < 0:
      raise ValueError(f"--hands must be >= 0 (0: until q or Ctrl-D), got {FLAGS.hands}")
    table = policy_io.resolve_policy(FLAGS.game_name, FLAGS.policy, "--policy")
  except (GameError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  record = play(FLAGS.game_name, table, FLAGS.seat, FLAGS.hands, FLAGS.seed, FLAGS.show_probs,
                FLAGS.policy)
  results = [r["return"] for r in record]
  n = len(results)
  print(json.dumps({
      "game": FLAGS.game_name, "policy": FLAGS.policy, "seed": FLAGS.seed, "hands": n,
      "total": sum(results), "mean": sum(results) / n if n else None,
      "stderr": float(np.std(results, ddof=1)) / math.sqrt(n) if n >= 2 else None,
      "record": record}))
  return 0


if __name__ == "__main__":
  app.run(main)
