"""Head-to-head matches (armac_spiel.match, experiments.match) and policy specs."""

import json
import subprocess
import sys

import numpy as np
import pyspiel
import pytest
import torch
from open_spiel.python.algorithms import expected_game_score

from armac_spiel import evaluation, match, policy_io
from games import infostate_table, load_game
from tests.conftest import REPO

PAIRS = [("cfr_plus:20", "uniform"), ("always_raise", "always_call"), ("uniform", "cfr_plus:5")]


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.match", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("game", ["kuhn_poker", "leduc_poker"])
@pytest.mark.parametrize("spec_a,spec_b", PAIRS)
def test_exact_values_equal_openspiel_policy_value(game, spec_a, spec_b):
  a = policy_io.resolve_policy(game, spec_a)
  b = policy_io.resolve_policy(game, spec_b)
  ex = match.exact_values(game, a, b)
  root = load_game(game).new_initial_state()
  pa, pb = (evaluation.to_openspiel_tabular(game, t) for t in (a, b))
  v0 = expected_game_score.policy_value(root, [pa, pb])[0]
  v1 = expected_game_score.policy_value(root, [pb, pa])[1]
  assert ex["method"] == "tree"
  assert ex["a_seat0"] == pytest.approx(v0, abs=1e-9)
  assert ex["a_seat1"] == pytest.approx(v1, abs=1e-9)
  assert ex["mean"] == pytest.approx((v0 + v1) / 2, abs=1e-9)


@pytest.mark.parametrize("game", ["kuhn_poker", "leduc_poker"])
@pytest.mark.parametrize("spec_a,spec_b", [("cfr_plus:20", "uniform"),
                                           ("always_raise", "cfr_plus:5")])
def test_sampled_mean_within_its_ci_of_the_exact_value(game, spec_a, spec_b):
  a = policy_io.resolve_policy(game, spec_a)
  b = policy_io.resolve_policy(game, spec_b)
  ex = match.exact_values(game, a, b)
  sm = match.sampled_match(game, a, b, 2000, seed=0)
  lo, hi = sm["ci95"]
  assert sm["hands"] == 2000 and 0 < sm["half_width"] < 1
  assert lo <= ex["mean"] <= hi, (sm, ex)
  for seat in ("a_seat0", "a_seat1"):
    lo, hi = sm[seat]["ci95"]
    assert lo <= ex[seat] <= hi, (seat, sm[seat], ex[seat])


@pytest.mark.parametrize("game", ["kuhn_poker", "leduc_poker"])
def test_tree_and_pyspiel_routes_play_identical_hands(game):
  a = policy_io.resolve_policy(game, "cfr_plus:5")
  b = policy_io.resolve_policy(game, "uniform")
  joint = match.seat_table(game, [a, b])
  u_c, u_a = match.uniforms(game, 300, seed=4)
  from games.tree import compile_tree
  r_tree = match.play_tree(compile_tree(game), joint, u_c, u_a)
  r_spiel = match.play_pyspiel(game, joint, u_c, u_a)
  np.testing.assert_array_equal(r_tree, r_spiel)
  assert len(np.unique(r_tree[:, 0])) > 2  # real variety of outcomes, not a constant


def test_duplicate_seats_share_the_deal():
  # With always_call on both sides no one folds: a Kuhn hand is a showdown of the dealt cards,
  # so A's two returns on the same deal cancel and every duplicate pair scores exactly 0.
  t = policy_io.resolve_policy("kuhn_poker", "always_call")
  sm = match.sampled_match("kuhn_poker", t, t, 500, seed=1)
  assert sm["mean"] == 0 and sm["half_width"] == 0
  assert sm["a_seat0"]["half_width"] > 0


def test_rule_policies():
  g = "leduc_poker"
  info = infostate_table(g)
  call, rise = (policy_io.resolve_policy(g, s) for s in ("always_call", "always_raise"))
  assert (call[:, 1] == 1).all()
  assert torch.equal(rise[:, 2] == 1, info.legal_mask[:, 2])
  assert (rise[~info.legal_mask[:, 2], 1] == 1).all()
  evaluation.validate_table(g, call)
  evaluation.validate_table(g, rise)
  kuhn = infostate_table("kuhn_poker")
  kcall = policy_io.resolve_policy("kuhn_poker", "always_call")
  for i, key in enumerate(kuhn.keys):
    assert kcall[i, 1 if "b" in key[1:] else 0] == 1, key
  with pytest.raises(ValueError, match="--policy=always_call.*kuhn_poker, leduc_poker"):
    policy_io.resolve_policy("liars_dice(numdice=1)", "always_call")


def test_run_directory_specs(tmp_path):
  g = "kuhn_poker"
  cfr = evaluation.cfr_plus_table(g, 30)
  policy_io.export_policy(str(tmp_path / "policy.json"), g, cfr)
  assert torch.equal(policy_io.resolve_policy(g, str(tmp_path)), cfr)
  with pytest.raises(ValueError, match="--a: run directory .* has no policy_mixed.json"):
    policy_io.resolve_policy(g, f"{tmp_path}:mixed", "--a")
  uni = evaluation.uniform_table(g)
  policy_io.export_policy(str(tmp_path / "policy_mixed.json"), g, uni)
  assert torch.equal(policy_io.resolve_policy(g, f"{tmp_path}:mixed"), uni)
  with pytest.raises(ValueError, match="is a policy for 'kuhn_poker'.*leduc_poker"):
    policy_io.resolve_policy("leduc_poker", str(tmp_path / "policy.json"))
  with pytest.raises(ValueError, match="cfr_plus:N needs a positive integer"):
    policy_io.resolve_policy(g, "cfr_plus:0")


def test_match_cli_prints_exact_and_sampled_json(tmp_path):
  g = "kuhn_poker"
  policy_io.export_policy(str(tmp_path / "policy.json"), g, evaluation.cfr_plus_table(g, 40))
  r = _cli(f"--game_name={g}", f"--a={tmp_path}", "--b=always_raise", "--hands=400",
           "--seed=3")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout.strip().splitlines()[-1])
  a = policy_io.resolve_policy(g, str(tmp_path))
  b = policy_io.resolve_policy(g, "always_raise")
  assert out["exact"]["mean"] == pytest.approx(match.exact_values(g, a, b)["mean"], abs=1e-12)
  assert out["sampled"] == json.loads(json.dumps(match.sampled_match(g, a, b, 400, 3)))
  assert out["sampled"]["ci95"][0] < out["sampled"]["mean"] < out["sampled"]["ci95"][1]


@pytest.mark.parametrize("args,message", [
    (["--b=nope"], "--b: no such file or run directory"),
    (["--a=cfr_plus:x"], "--a=cfr_plus:N"),
    (["--game_name=kuhn_poker(players=3)"], "two-player zero-sum"),
    (["--hands=-1"], "--hands must be >= 0"),
])
def test_match_cli_bad_input_exits_2(args, message):
  r = _cli("--game_name=kuhn_poker", *args)
  assert r.returncode == 2 and message in r.stderr, r.stderr
