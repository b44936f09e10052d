"""experiments.play driven through stdin, and the poker view it shows."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from armac_spiel import policy_io
from games import infostate_table, load_game
from games.infostates import decision_states
from games.poker_view import PokerView, view_for
from tests.conftest import REPO

RESULT = re.compile(r"^Hand (\d+): you (won|lost|tied,) ([\d.]+) chips \((.*)\)\.$", re.M)


def _play(stdin: str, *args):
  r = subprocess.run([sys.executable, "-m", "experiments.play", *args], cwd=REPO, input=stdin,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  return r.stdout, json.loads(r.stdout.strip().splitlines()[-1])


def _replay(game: str, history: list[int]):
  s = load_game(game).new_initial_state()
  for a in history:
    s.apply_action(a)
  return s


def test_kuhn_script_results_equal_game_returns_and_illegal_input_is_reasked():
  # "raise" and "zz" name no legal Kuhn action (check/bet or fold/call); "1" (bet or call)
  # is always legal.
  stdin = "raise\nzz\n" + "1\n" * 40
  out, rec = _play(stdin, "--game_name=kuhn_poker", "--policy=cfr_plus:30", "--hands=6",
                   "--seed=5", "--seat=alternate", "--show_probs")
  assert out.count("is not a legal action here; legal actions:") == 2
  assert "'raise' is not a legal action here; legal actions: check (0), bet (1)" in out or \
      "'raise' is not a legal action here; legal actions: fold (0), call (1)" in out
  assert rec["hands"] == 6 and len(rec["record"]) == 6
  assert [h["seat"] for h in rec["record"]] == [0, 1, 0, 1, 0, 1]
  printed = RESULT.findall(out)
  assert len(printed) == 6
  view = PokerView("kuhn_poker")
  for hand, (num, verb, chips, shown) in zip(rec["record"], printed):
    state = _replay("kuhn_poker", hand["history"])
    assert state.is_terminal()
    ret = state.returns()[hand["seat"]]
    assert hand["return"] == ret
    sign = {"won": 1, "lost": -1, "tied,": 0}[verb]
    assert sign * float(chips) == ret
    bot = 1 - hand["seat"]
    assert f"bot held {view.card_name(hand['history'][bot])}" in shown
    assert f"you held {view.card_name(hand['history'][hand['seat']])}" in shown
  results = [h["return"] for h in rec["record"]]
  assert rec["total"] == sum(results)
  assert rec["stderr"] == pytest.approx(np.std(results, ddof=1) / np.sqrt(6))
  assert "Summary against cfr_plus:30: score" in out
  assert f"score {sum(results):+g} chips after 6 hands" in out.split("Summary")[1]


def test_leduc_eof_ends_with_summary_and_chance_is_seeded():
  stdin = "fold\n" + "call\n" * 5  # fold is illegal before anyone bets
  args = ("--game_name=leduc_poker", "--policy=always_raise", "--seed=7", "--seat=1")
  out1, rec1 = _play(stdin, *args)
  out2, rec2 = _play(stdin, *args)
  assert out1 == out2  # cards and the bot's draws come from --seed
  assert "Summary against always_raise" in out1
  for hand in rec1["record"]:
    assert _replay("leduc_poker", hand["history"]).returns()[1] == hand["return"]
  _, rec3 = _play(stdin, "--game_name=leduc_poker", "--policy=always_raise", "--seed=8",
                  "--seat=1")
  deals = lambda r: [h["history"][:2] for h in r["record"]]
  assert deals(rec1) != deals(rec3) or not rec1["record"]


def test_q_quits_with_summary_and_poker_view_is_shown():
  out, rec = _play("q\n", "--game_name=leduc_poker", "--policy=uniform", "--seed=2",
                   "--seat=0")
  assert rec["hands"] == 0 and rec["record"] == []
  assert "Your card: " in out and "Board: -" in out and "Pot: 2   you put in 1, bot put in 1" in out
  assert "Your move [check, bet]:" in out
  assert "Summary against uniform: score +0 chips after 0 hands." in out


def test_show_probs_lists_every_bot_decision():
  out, rec = _play("c\n" * 30, "--game_name=leduc_poker", "--policy=always_raise",
                   "--hands=3", "--seed=1", "--seat=0", "--show_probs")
  lines = [l for l in out.splitlines() if l.startswith("  bot holding")]
  view = PokerView("leduc_poker")
  bot_decisions = 0
  for hand in rec["record"]:
    s = load_game("leduc_poker").new_initial_state()
    for a in hand["history"]:
      if not s.is_chance_node() and s.current_player() == 1:
        bot_decisions += 1
      s.apply_action(a)
  assert len(lines) == bot_decisions > 0
  for l in lines:  # always_raise: probability 1 on raise/bet where legal, else on call
    dist = dict(re.findall(r"(\w+) ([\d.]+)", l.split(": ", 1)[1]))
    chosen = l.rsplit("-> ", 1)[1]
    assert float(dist[chosen]) == 1.0 and chosen in ("bet", "raise", "call")


def test_generic_game_uses_openspiel_action_strings():
  out, rec = _play("zz\n2-4\n" + "liar\n" * 5, "--game_name=liars_dice(numdice=1)",
                   "--policy=uniform", "--hands=1", "--seed=0", "--seat=0")
  assert "'zz' is not a legal action here; legal actions: 1-1 (0), 1-2 (1)" in out
  hand = rec["record"][0]
  assert hand["history"][2] == 9  # "2-4" is action 9
  state = _replay("liars_dice(numdice=1)", hand["history"])
  assert state.is_terminal() and state.returns()[0] == hand["return"]
  assert "points" in out


@pytest.mark.parametrize("args,message", [
    (["--seat=2"], "--seat must be one of 0, 1 or alternate"),
    (["--policy=cfr_plus:0"], "--policy=cfr_plus:N"),
    (["--game_name=nope_poker"], "unknown or malformed game"),
])
def test_play_bad_flags_exit_2(args, message):
  r = subprocess.run([sys.executable, "-m", "experiments.play", "--game_name=kuhn_poker",
                      *args], cwd=REPO, input="", capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and message in r.stderr, r.stderr


@pytest.mark.parametrize("game", ["kuhn_poker", "leduc_poker"])
def test_poker_view_chips_and_words_match_openspiel(game):
  view = view_for(game)
  assert view.poker
  for s in decision_states(game):
    c = view.contributions(s)
    facing = max(c) > c[s.current_player()]
    words = set(view.legal_words(s).values())
    assert words == ({"fold", "call"} | ({"raise"} if game == "leduc_poker" and
                                          len(words) == 3 else set())
                     if facing else {"check", "bet"}), (str(s), words)
    if game == "leduc_poker":
      pot = int(re.search(r"\[Pot: (\d+)\]", s.information_state_string()).group(1))
      assert sum(c) == pot
    for a in s.legal_actions():
      child = s.child(a)
      if child.is_terminal():
        cc = view.contributions(child)
        ret = child.returns()
        for p in range(2):  # a seat loses what it put in or wins the others' chips
          assert ret[p] in (-cc[p], sum(cc) - cc[p], 0.0), (child.history(), ret, cc)
