"""Exact evaluation and policy-v1 files."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from open_spiel.python.algorithms import exploitability as os_exploitability

from armac_spiel import evaluation as ev
from armac_spiel import policy_io
from games import GameError, infostate_table


@pytest.mark.parametrize("game_string, expected", [("kuhn_poker", 0.458333333),
                                                   ("leduc_poker", 2.373611111)])
def test_uniform_exploitability(game_string, expected):
  assert ev.exploitability(game_string, ev.uniform_table(game_string)) == pytest.approx(
      expected, abs=1e-6)


def _random_table(game_string, seed):
  mask = infostate_table(game_string).legal_mask
  g = torch.Generator().manual_seed(seed)
  x = torch.rand(mask.shape, generator=g, dtype=torch.float64) * mask
  return x / x.sum(1, keepdim=True)


@pytest.mark.parametrize("game_string", ["kuhn_poker", "leduc_poker"])
@pytest.mark.parametrize("kind", ["cfr_plus", "random"])
def test_cpp_route_equals_python_module(game_string, kind):
  probs = (ev.cfr_plus_table(game_string, 20) if kind == "cfr_plus"
           else _random_table(game_string, 0))
  ours = ev.exploitability(game_string, probs)
  theirs = os_exploitability.exploitability(
      ev.load_game(game_string).game, ev.to_openspiel_tabular(game_string, probs))
  assert abs(ours - theirs) < 1e-9
  assert ev.nash_conv(game_string, probs) == pytest.approx(2 * ours, abs=1e-9)


def test_batched_callable_is_tabularised_in_one_call():
  calls = []

  def net(x, mask):
    calls.append(x.shape[0])
    logits = x.sum(1, keepdim=True) * torch.arange(mask.shape[1])
    return torch.softmax(logits.masked_fill(~mask, -1e9), 1)

  probs = ev.tabularise("leduc_poker", net)
  assert calls == [936]
  assert torch.allclose(probs.sum(1), torch.ones(936, dtype=torch.float64))


def test_exploitability_needs_two_player_zero_sum():
  with pytest.raises(GameError, match="two-player zero-sum"):
    ev.exploitability("leduc_poker(players=3)", None)


def test_expected_value_kuhn_cfr_plus_is_game_value():
  probs = ev.cfr_plus_table("kuhn_poker", 500)
  v = ev.expected_returns("kuhn_poker", [probs, probs])
  assert v[0] == pytest.approx(-1 / 18, abs=2e-3)
  # Against the uniform policy, the CFR+ player 0 does better than the game value.
  u = ev.uniform_table("kuhn_poker")
  assert ev.expected_returns("kuhn_poker", [probs, u])[0] > -1 / 18 + 0.01


def test_invalid_tables_are_rejected():
  good = ev.uniform_table("kuhn_poker")
  with pytest.raises(ev.PolicyError, match="sum to"):
    ev.validate_table("kuhn_poker", good * 0.5)
  with pytest.raises(ev.PolicyError, match="shape"):
    ev.validate_table("kuhn_poker", good[:3])


def test_export_import_round_trips_bit_for_bit(tmp_path):
  probs = _random_table("leduc_poker", 1)
  path = tmp_path / "p.json"
  policy_io.export_policy(str(path), "leduc_poker", probs)
  game, back = policy_io.import_policy(str(path))
  assert game == "leduc_poker"
  assert torch.equal(back, probs)
  obj = json.loads(path.read_text())
  assert obj["format"] == "armac-spiel/policy-v1"
  assert len(obj["policy"]) == 936


def _write(tmp_path, obj):
  p = tmp_path / "bad.json"
  p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
  return str(p)


def _mutate(fn):
  obj = policy_io.policy_to_json("kuhn_poker", ev.uniform_table("kuhn_poker"))
  fn(obj)
  return obj


@pytest.mark.parametrize("mutation, message", [
    (lambda o: o.update(format="armac-spiel/policy-v0"), "format is"),
    (lambda o: o.pop("game"), "missing field"),
    (lambda o: o.update(game="no_such_game"), "field 'game'"),
    (lambda o: o["policy"].pop("0"), "missing"),
    (lambda o: o["policy"].update({"zz": {"0": 1.0}}), "unknown information state"),
    (lambda o: o["policy"]["0"].update({"0": 0.7}), "sum to"),
    (lambda o: o["policy"]["0"].update({"0": -0.5, "1": 1.5}), "finite number >= 0"),
    (lambda o: o["policy"]["0"].update({"7": 0.0}), "not legal"),
    (lambda o: o["policy"]["0"].update({"x": 0.0}), "not an integer"),
])
def test_bad_policy_files_raise(tmp_path, mutation, message):
  path = _write(tmp_path, _mutate(mutation))
  with pytest.raises(policy_io.PolicyFileError, match=message):
    policy_io.import_policy(path)


def test_truncated_policy_file(tmp_path):
  path = _write(tmp_path, '{"game": "kuhn_poker", "format"')
  with pytest.raises(policy_io.PolicyFileError, match="not valid JSON"):
    policy_io.import_policy(path)


def test_evaluate_cli_prints_json_last(tmp_path):
  out = tmp_path / "cfr.json"
  r = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--game_name=kuhn_poker",
                      "--policy=cfr_plus:50", f"--export={out}"],
                     capture_output=True, text=True, check=True)
  last = json.loads(r.stdout.strip().splitlines()[-1])
  assert set(last) >= {"game", "exploitability", "nash_conv", "seconds"}
  assert 0 < last["exploitability"] < 0.01
  r2 = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--game_name=kuhn_poker",
                       f"--policy={out}"], capture_output=True, text=True, check=True)
  assert json.loads(r2.stdout.strip().splitlines()[-1])["exploitability"] == pytest.approx(
      last["exploitability"], abs=1e-12)
  bad = subprocess.run([sys.executable, "-m", "experiments.evaluate",
                        "--game_name=kuhn_poker", "--policy=cfr_plus:x"],
                       capture_output=True, text=True)
  assert bad.returncode != 0 and "--policy=cfr_plus:N" in bad.stderr


def test_exact_values_measure_a_table_once(monkeypatch):
  """exact_values evaluates each table of a call once, and a table measured recently not
  again (evaluation._Memo): the values equal a fresh evaluation's, own reach included."""
  g = "leduc_poker"
  a, b, c = (_random_table(g, s) for s in (11, 12, 13))
  fresh = ev.exact_values(g, [a, b, c])  # may fill the memo; the reference values
  monkeypatch.setattr(ev, "_MEMO", ev._Memo())
  seen = []
  tree = ev.compile_tree(g)
  real = type(tree).evaluate
  monkeypatch.setattr(type(tree), "evaluate",
                      lambda self, probs: seen.append(len(probs)) or real(self, probs))
  first = ev.exact_values(g, [a, b, a.clone()])
  second = ev.exact_values(g, [c, b, a])
  assert seen == [2, 1]  # a and b once, then c alone
  assert first.nash_conv == [fresh.nash_conv[0], fresh.nash_conv[1], fresh.nash_conv[0]]
  assert second.nash_conv == [fresh.nash_conv[2], fresh.nash_conv[1], fresh.nash_conv[0]]
  assert torch.equal(second.own_reach, fresh.own_reach[[2, 1, 0]])
  nudged = a.clone()
  nudged[0, 0] += 1e-12  # another table, however close
  ev.exact_values(g, [nudged])
  assert seen == [2, 1, 1]


def test_a_value_the_memo_drops_during_a_call_still_comes_back(monkeypatch):
  g = "leduc_poker"
  a, b = _random_table(g, 21), _random_table(g, 22)
  want = ev.exact_values(g, [a, b]).nash_conv
  one = infostate_table(g).legal_mask.shape[0] * 8  # one table's own reach (float64)
  monkeypatch.setattr(ev, "_MEMO", ev._Memo(max_bytes=one))
  ev.exact_values(g, [a])
  assert ev.exact_values(g, [a, b]).nash_conv == want  # b's entry pushes a's out
  assert len(ev._MEMO.items) == 1


def test_the_memo_holds_at_most_its_bytes():
  memo = ev._Memo(max_bytes=3 * 8 * 10)
  for i in range(5):
    memo.put(("g", i), float(i), torch.zeros(10, dtype=torch.float64))
  assert [k[1] for k in memo.items] == [2, 3, 4] and memo.bytes == 240
  memo.put(("g", 9), 9.0, torch.zeros(100, dtype=torch.float64))  # larger than the memo
  assert memo.get(("g", 9)) is None and len(memo.items) == 3
