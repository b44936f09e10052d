"""Approximate exploitability (armac_spiel.approx): lower bounds by sampled play, checked
against exact values on Kuhn and Leduc."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from armac_spiel import approx, evaluation, policy_io
from armac_spiel.approx import in_run
from armac_spiel.approx.frozen import frozen_policy
from armac_spiel.approx.histories import HistoryCache
from armac_spiel.approx.lbr import NotPokerError
from games import ladder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = approx.Budget(episodes=60_000, eval_episodes=12_000)


def _exact(game, probs):
  return evaluation.fast_exploitability(game, probs)[0]


@pytest.mark.parametrize("game,spec", [("kuhn_poker", "uniform"), ("kuhn_poker", "cfr_plus:20"),
                                       ("leduc_poker", "uniform"),
                                       ("leduc_poker", "always_call")])
@pytest.mark.parametrize("method", ["learned_br", "lbr"])
def test_lower_bound(game, spec, method):
  probs = policy_io.resolve_policy(game, spec)
  exact = _exact(game, probs)
  est = approx.estimate(game, probs, method, SMALL, seed=1)
  assert est.method == method and est.ci95 > 0
  assert est.exploitability <= exact + est.ci95
  if spec == "uniform" and method == "learned_br":
    assert est.exploitability >= 0.8 * exact


def test_learned_br_values_are_the_seats_best_responses_on_kuhn():
  """Kuhn's uniform policy: each seat's learned responder reaches the exact best response
  value of that seat (OpenSpiel's best_response), within a few intervals."""
  from open_spiel.python.algorithms import exploitability as os_expl
  game = "kuhn_poker"
  probs = evaluation.uniform_table(game)
  est = approx.estimate(game, probs, "learned_br", SMALL, seed=2)
  pol = evaluation.to_openspiel_tabular(game, probs)
  spiel_game = pol.game
  for seat in (0, 1):
    exact = os_expl.best_response(spiel_game, pol, seat)["best_response_value"]
    assert abs(est.br_values[seat] - exact) <= 3 * est.br_ci95[seat] + 1e-3


def test_sampled_returns_match_exact_expected_returns_with_any_baseline():
  """The cache's play is unbiased, and so is it with a control variate, even a bad one."""
  game = "leduc_poker"
  probs = policy_io.resolve_policy(game, "always_call")
  uniform = evaluation.uniform_table(game)
  cache = HistoryCache(game, [frozen_policy(game, probs), frozen_policy(game, uniform)])
  exact = evaluation.expected_returns(game, [probs, uniform])[0]
  rng = np.random.default_rng(0)

  def noisy(c, nodes):
    return np.random.default_rng(len(nodes)).normal(size=nodes.size) * 3.0

  for baseline in (None, noisy):
    play = cache.play([None, None], 30_000, rng, baseline=baseline)
    x = play.returns[:, 0] - (0 if baseline is None else play.correction)
    half = 4 * x.std() / np.sqrt(x.size)
    assert abs(x.mean() - exact) <= half


def test_lbr_refuses_a_game_that_is_not_poker():
  goofspiel = ladder.rung("goofspiel_4").game
  with pytest.raises(NotPokerError, match="--method=lbr.*poker.*kuhn_poker, leduc_poker"):
    approx.estimate(goofspiel, evaluation.uniform_table(goofspiel), "lbr", SMALL)
  with pytest.raises(ValueError, match="--method='nope'"):
    approx.estimate("kuhn_poker", evaluation.uniform_table("kuhn_poker"), "nope", SMALL)


def test_budget_errors_name_the_flag():
  with pytest.raises(ValueError, match="--budget_episodes=0"):
    approx.Budget(episodes=0)
  with pytest.raises(ValueError, match="--eval_s=-1"):
    approx.Budget(eval_seconds=-1)


def test_a_network_policy_needs_no_table():
  """A batched callable is evaluated without enumerating the game: the uniform policy as
  a function gives the uniform table's value."""
  game = "kuhn_poker"
  est = approx.estimate(game, approx.uniform_policy, "learned_br", SMALL, seed=3)
  assert abs(est.exploitability - _exact(game, evaluation.uniform_table(game))) <= \
      3 * est.ci95 + 1e-3


def test_evaluate_cli_learned_br():
  out = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", "--game_name=kuhn_poker",
       "--policy=uniform", "--method=learned_br", "--budget_episodes=20000",
       "--eval_episodes=8000"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["method"] == "learned_br" and res["ci95"] > 0
  assert res["episodes"] == 20000 + 2 * 8000 and res["seconds"] > 0
  assert res["exploitability"] <= 0.4583333 + res["ci95"]


def test_run_loop_logs_the_method_and_keeps_to_its_share(tmp_path):
  from armac_spiel import runs
  spec = runs.resolve_spec("cfr_plus", "kuhn_poker", 0, str(tmp_path / "run"), max_steps=4,
                           eval_every=2, plot=False, evaluation="learned_br")
  rows = runs.run(spec)
  assert [r["exploitability_method"] for r in rows] == ["learned_br"] * 2
  assert all(r["exploitability_ci95"] > 0 and r["approx_episodes"] > 0 for r in rows)
  spent = sum(r["approx_s"] for r in rows)
  assert spent <= max(in_run.MIN_S * len(rows),
                      in_run.APPROX_SHARE / (1 - in_run.APPROX_SHARE) * rows[-1]["train_s"]) * 1.5
  exact = runs.resolve_spec("cfr_plus", "kuhn_poker", 0, str(tmp_path / "exact"), max_steps=2,
                            eval_every=2, plot=False)
  rows = runs.run(exact)
  assert rows[-1]["exploitability_method"] == "exact" and rows[-1]["exploitability_ci95"] == 0


def test_run_spec_rejects_lbr_off_poker(tmp_path):
  from armac_spiel import runs
  from armac_spiel.config import ConfigError
  with pytest.raises(ConfigError, match="--method=lbr|--evaluation"):
    runs.resolve_spec("cfr_plus", ladder.rung("goofspiel_4").game, 0, str(tmp_path),
                      max_steps=1, evaluation="lbr")
  with pytest.raises(ConfigError, match="--evaluation='bogus'"):
    runs.resolve_spec("cfr_plus", "kuhn_poker", 0, str(tmp_path), max_steps=1,
                      evaluation="bogus")


def test_cache_reuse_across_policies_gives_the_same_estimate():
  """A cache kept from another policy's estimate (as inside a run) gives the estimate of a
  fresh cache: ids and histories found earlier do not change the sampled play."""
  game = "kuhn_poker"
  a, b = evaluation.uniform_table(game), policy_io.resolve_policy(game, "cfr_plus:5")
  cache = HistoryCache(game, [frozen_policy(game, a)] * 2)
  approx.estimate(game, a, "learned_br", SMALL, seed=4, cache=cache)
  reused = approx.estimate(game, b, "learned_br", SMALL, seed=5, cache=cache)
  fresh = approx.estimate(game, b, "learned_br", SMALL, seed=5)
  assert reused.exploitability == pytest.approx(fresh.exploitability, abs=1e-12)
  assert torch.is_tensor(b)


def test_a_solver_policy_outlives_its_learner():
  """OS-MCCFR's policy is queried per state, without enumeration, and keeps the solver it
  points into alive."""
  import gc
  from armac_spiel.baselines import OSMCCFR
  learner = OSMCCFR("kuhn_poker", 0, iterations_per_step=200)
  learner.step()
  pol = in_run.learner_policy(learner)
  exact = _exact("kuhn_poker", pol)
  del learner
  gc.collect()
  est = approx.estimate("kuhn_poker", pol, "learned_br", SMALL, seed=6)
  assert est.exploitability <= exact + est.ci95
  assert est.exploitability >= 0.8 * exact
