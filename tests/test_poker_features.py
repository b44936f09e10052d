"""Hand-checked poker features and the strings route against the states route."""

import pytest
import torch

import games
from games.infostates import one_state_per_infostate
from games.poker_features import (features_from_infostate_strings, poker_features,
                                  poker_spec)

UNIV = ("universal_poker(betting=nolimit,numPlayers=2,numRounds=2,blind=50 100,"
        "firstPlayer=2 1,numSuits=2,numRanks=3,numHoleCards=1,numBoardCards=0 1,"
        "stack=1200 1200,bettingAbstraction=fullgame)")


def _play(game_string, actions):
  state = games.load_game(game_string).new_initial_state()
  for a in actions:
    state.apply_action(a)
  return state


def _row(f, i=0):
  return {k: v[i].item() for k, v in f._asdict().items()}


def test_kuhn_hand_checked():
  # Deal 0,1 then p0 bets: p1 to act with pot 3, own stack 1.
  s = _play("kuhn_poker", [0, 1, 1])
  assert s.information_state_string() == "1b"
  assert _row(poker_features(games.load_game("kuhn_poker"), [s])) == dict(
      round=0, player=1, position=1, pot=3.0, stack=1.0, pot_bucket=3, stack_bucket=2)
  # 3 players: '1ppbp' = p0, p1 passed, p2 bet, p0 passed: p1 to act, pot 3 + 1.
  f = features_from_infostate_strings("kuhn_poker(players=3)", ["1ppbp", "3ppb", "2"])
  assert f.player.tolist() == [1, 0, 0]
  assert f.pot.tolist() == [4.0, 4.0, 3.0]
  assert f.stack.tolist() == [1.0, 1.0, 1.0]
  # 4 players: '1ppbb' = p2 and p3 bet: p0 (who passed) to act, pot 4 + 2, stack 1.
  f = features_from_infostate_strings("kuhn_poker(players=4)", ["1ppbb"])
  assert (f.player.item(), f.pot.item(), f.stack.item()) == (0, 6.0, 1.0)
  assert f.pot_bucket.item() == 3 and f.stack_bucket.item() == 2


def test_leduc_hand_checked():
  # Deal 1 to p0, 5 to p1; p0 raises (2), p1 re-raises (2), p0 calls (1); public card 1;
  # p0 checks (1): p1 to act in round 2 with pot 10, 95 each.
  s = _play("leduc_poker", [1, 5, 2, 2, 1, 0, 1])
  assert s.current_player() == 1
  key = s.information_state_string()
  assert "[Round 2][Player: 1][Pot: 10][Money: 95 95]" in key
  assert _row(poker_features(games.load_game("leduc_poker"), [s])) == dict(
      round=1, player=1, position=1, pot=10.0, stack=95.0, pot_bucket=0, stack_bucket=3)
  f = features_from_infostate_strings(
      "leduc_poker(players=3)",
      ["[Observer: 2][Private: 0][Round 2][Player: 2][Pot: 11][Money: 93 99 97]"
       "[Public: 6][Round1: 2 0 1][Round2: 2]"])
  assert _row(f) == dict(round=1, player=2, position=2, pot=11.0, stack=97.0,
                         pot_bucket=0, stack_bucket=3)
  f = features_from_infostate_strings(
      "leduc_poker(starting_player=1)",
      ["[Observer: 0][Private: 4][Round 2][Player: 0][Pot: 10][Money: 95 95][Public: 5]"
       "[Round1: 1 2 2 1][Round2: 1]"])
  assert f.position.item() == 1


def test_universal_hand_checked():
  sg = games.load_game(UNIV)
  spec = poker_spec(UNIV)
  assert spec.first_player == (1, 0) and spec.total_chips == 2400
  s = _play(UNIV, [0, 1])  # deal hole cards; player 1 (firstPlayer=2) acts first
  assert s.current_player() == 1
  # OpenSpiel's Pot field (200) is max-spend x players; committed chips are 50 + 100.
  assert "[Pot: 200][Money: 1150 1100]" in s.information_state_string()
  assert _row(poker_features(sg, [s])) == dict(
      round=0, player=1, position=0, pot=150.0, stack=1100.0, pot_bucket=0, stack_bucket=3)
  f = features_from_infostate_strings(
      "universal_poker",
      ["[Round 1][Player: 1][Pot: 1800][Money: 300 900][Private: 3h][Public: 2c]"
       "[Sequences: r300c|r900]"])
  assert _row(f) == dict(round=1, player=1, position=1, pot=1200.0, stack=900.0,
                         pot_bucket=2, stack_bucket=3)
  f = features_from_infostate_strings(
      "universal_poker(firstPlayer=2 1)",
      ["[Round 0][Player: 0][Pot: 2400][Money: 0 900][Private: 5s][Public: ]"
       "[Sequences: r300r1200]"])
  assert (f.position.item(), f.pot.item(), f.stack_bucket.item(), f.pot_bucket.item()) == (
      1, 1500.0, 0, 2)


def test_leduc_strings_route_equals_states_route_and_buckets_in_range():
  table = games.infostate_table("leduc_poker")
  sg = games.load_game("leduc_poker")
  states = one_state_per_infostate("leduc_poker")
  assert len(states) == len(table) == 936
  by_state = poker_features(sg, [states[k] for k in table.keys], n_buckets=5)
  by_key = features_from_infostate_strings("leduc_poker", table.keys, n_buckets=5)
  for a, b in zip(by_state, by_key):
    assert torch.equal(a, b)
  assert torch.equal(by_key.player, table.player)
  for b in (by_key.pot_bucket, by_key.stack_bucket):
    assert b.min() >= 0 and b.max() <= 4
  # Leduc pots stay under 26 of 200 chips: "total" buckets are constant, "reachable" are not.
  assert by_key.pot_bucket.unique().tolist() == [0]
  assert by_key.stack_bucket.unique().tolist() == [4]
  reach = features_from_infostate_strings("leduc_poker", table.keys, 4, "reachable")
  assert reach.pot_bucket.unique().tolist() == [0, 1, 2, 3]
  assert reach.stack_bucket.unique().tolist() == [1, 2, 3]
  # pot 22 of 26 -> bucket 3; stack 91 -> (91 - 87) / 13 -> bucket 1.
  i = by_key.pot.tolist().index(22.0)
  assert reach.pot_bucket[i].item() == 3
  j = by_key.stack.tolist().index(91.0)
  assert reach.stack_bucket[j].item() == 1
  # Leduc's Pot field equals the committed chips.
  pots = [int(k.split("[Pot: ")[1].split("]")[0]) for k in table.keys]
  assert by_key.pot.long().tolist() == pots
  assert set(by_key.round.tolist()) == {0, 1}


def test_other_games_rejected():
  with pytest.raises(ValueError, match="tic_tac_toe"):
    features_from_infostate_strings("tic_tac_toe", ["x"])
  with pytest.raises(ValueError, match="decision states"):
    sg = games.load_game("kuhn_poker")
    poker_features(sg, [sg.new_initial_state()])
