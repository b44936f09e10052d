"""Diagnostics reach ARMAC through its public seams (target_critic, state_*_targets)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from armac_spiel import config as config_lib
from armac_spiel.armac import ARMAC
from experiments.diagnostics.diagnose_regret import ExactCritic
from games.tree import exact_q
from tests.conftest import REPO, TINY

TINY_ROWS = dict(TINY, regret_fit="rows")


def test_exact_target_critic_reads_each_policys_exact_q_and_leaves_the_critic_untrained():
  cfg = config_lib.ARMACConfig(**TINY_ROWS, sampler="tree")
  exact = ExactCritic()
  a = ARMAC("kuhn_poker", cfg, seed=0, target_critic=exact)
  before = [p.clone() for p in a.critic.parameters()]
  tables = []
  for _ in range(3):
    tables.append(a.current_policy().table())  # pi^t, which epoch t's targets evaluate
    out = a.step()
  assert out["critic_loss"] != out["critic_loss"]  # nan: not trained
  assert all(torch.equal(p, q) for p, q in zip(before, a.critic.parameters()))
  assert sorted(exact.q_tables) == [0, 1, 2]
  for t, table in enumerate(tables):
    assert torch.allclose(exact.q_tables[t][:-1], exact_q(a.tree, table).float())
    assert not exact.q_tables[t][-1].any()  # padding row
  assert not torch.allclose(exact.q_tables[0], exact.q_tables[2])  # the policy moved
  seen, y, mask = a.state_regret_targets()
  assert 0 < len(seen) <= 12 and torch.isfinite(y).all()


def test_state_targets_need_information_state_ids():
  a = ARMAC("kuhn_poker", config_lib.ARMACConfig(**TINY_ROWS, sampler="pyspiel"), seed=0)
  try:
    a.state_regret_targets()
  except ValueError as e:
    assert "sampler 'tree'" in str(e)
  else:
    raise AssertionError("expected a ValueError")


def test_diagnostics_run_as_modules():
  for args in (["diagnose_regret", "--tabular", "--epochs=4", "--every=2"],
               ["diagnose_regret", "--critic=exact", "--epochs=2", "--every=2",
                "--set=episodes_per_epoch=256,regret_steps=2,critic_steps=2,actor_steps=2"],
               ["cfr_alternating", "--iterations=2"]):
    r = subprocess.run([sys.executable, "-m", f"experiments.diagnostics.{args[0]}",
                        "--game_name=kuhn_poker", *args[1:]], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exploitability" in r.stdout, r.stdout


def test_compare_configs_names_a_bad_arm_and_exits_2():
  for arm, needle in (("noequals", "NAME=OVERRIDES"),
                      ("x=regret_discount=bogus", "regret_discount")):
    r = subprocess.run([sys.executable, "-m", "experiments.diagnostics.compare_configs",
                        "--game_name=kuhn_poker", f"--arm={arm}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and needle in r.stderr, (r.returncode, r.stderr[-1000:])


def _scheduler_run(tmp_path, utility: str, epochs: int):
  """A short Kuhn scheduler run (experiments.train) with the given utility_computation
  lines; returns (its directory, the environment to run diagnostics with)."""
  cfg = tmp_path / "sched.yaml"
  # update_every 1: an update every epoch (auto spaces them by the clock, and a 3-epoch
  # run could then end before its first update after the warm-up)
  cfg.write_text("episodes_per_epoch: 256\nuse_scheduler: true\nscheduler:\n"
                 "  scheduler_warmup_iters: 1\n  update_every: 1\nutility_computation:\n"
                 + utility)
  run = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": REPO}
  r = subprocess.run([sys.executable, "-m", "experiments.train", "--game_name=kuhn_poker",
                      f"--config={cfg}", f"--max_epochs={epochs}", f"--eval_every={epochs}",
                      "--device=cpu", "--noprogress", f"--out_dir={run}"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  return run, env


def test_diagnose_br_critic_never_reports_a_responder_above_the_exact_best_response(tmp_path):
  """A greedy responder on a learned Q can at best tie the exact best response."""
  run, env = _scheduler_run(tmp_path, "  strategy: br_critic\n  br_episodes: 256\n", 3)
  r = subprocess.run([sys.executable, "-m", "experiments.diagnostics.diagnose_br_critic",
                      f"--run_dir={run}", "--updates=3", "--every=1"], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  for k in ("mix", "actor"):
    assert 0.0 < out[f"exact_{k}"]
    assert out[f"learned_{k}"] <= out[f"exact_{k}"] + 1e-9
  last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
  # The diagnostic's mix is the average's. br_critic has no exact measure: it deploys the
  # average's mix or the actor alone, by its sampled responders (scheduler.deployed_actor),
  # never best_measured's exact choice.
  assert out["exact_mix"] == pytest.approx(last["exploitability_mixed_average"], abs=1e-9)
  want = (last["exploitability"] if last["scheduler.deployed_actor"]
          else last["exploitability_mixed_average"])
  assert last["exploitability_mixed"] == pytest.approx(want, abs=1e-6)


def test_scheduler_headroom_solves_the_frozen_parts_below_every_single_lambda(tmp_path):
  """scheduler_headroom on a short Kuhn run: its first measures are the run's last
  evaluation (same parts), and CFR-BR on the frozen parts brings its average below the
  best single lambda and both parts (the solve's optimum is at most theirs)."""
  run, env = _scheduler_run(tmp_path, "  strategy: best_response\n", 4)
  r = subprocess.run([sys.executable, "-m", "experiments.diagnostics.scheduler_headroom",
                      f"--run_dir={run}", "--iterations=64", "--report_at=1,64"], cwd=REPO,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
  assert out["deployed"] == pytest.approx(last["exploitability_mixed"], abs=1e-9)
  assert out["pi_avg"] == pytest.approx(last["exploitability"], abs=1e-6)
  assert out["best_global_lambda"] == pytest.approx(
      last["exploitability_best_global_lambda"], abs=1e-6)
  assert out["warm"][0]["current"] == pytest.approx(out["manager_current"], abs=1e-9)
  bound = min(out["best_global_lambda"], out["pi_avg"], out["pi_rm"])
  for name in ("warm", "cold"):
    assert out[name][-1]["iteration"] == 64
    assert 0.0 < out[name][-1]["average"] < bound - 1e-3
  r = subprocess.run([sys.executable, "-m", "experiments.diagnostics.scheduler_headroom",
                      f"--run_dir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode != 0
