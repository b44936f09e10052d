"""Sweep runner: inline and Ray give the same runs, reruns skip or resume, provenance and
plots (a Kuhn sweep of 2 seeds x {ARMAC (tiny), ES-MCCFR} with epoch / step budgets)."""

import json
import os
import subprocess
import sys

import pytest

from armac_spiel.runs import rundir, sweep
from games import ladder
from tests.conftest import REPO, TINY, as_yaml

TINY_YAML = as_yaml(TINY)
ALGOS = ("armac", "es_mccfr")
SEEDS = (0, 1)
TIMING = set(rundir.TIMING_FIELDS) | {"eval_s"}


def _tasks(root, cfg):
  return sweep.make_tasks(str(root), ["kuhn_poker"], ALGOS, SEEDS, max_epochs=4,
                          max_steps=40, armac_config=cfg, plot=False)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120)


def _non_timing(root):
  out = {}
  for t in _tasks(root, None):
    rows = rundir.read_metrics(os.path.join(t.out_dir, "metrics.jsonl"))
    out[(t.algo, t.seed)] = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
  return out


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
  base = tmp_path_factory.mktemp("sweep")
  cfg = base / "tiny.yaml"
  cfg.write_text(TINY_YAML)
  inline, ray_dir = base / "inline", base / "ray"
  res_inline = sweep.run_sweep(_tasks(inline, str(cfg)), str(inline), ray_address="none")
  res_ray = sweep.run_sweep(_tasks(ray_dir, str(cfg)), str(ray_dir), ray_address="local",
                            num_cpus=2)
  return {"cfg": str(cfg), "inline": inline, "ray": ray_dir, "res_inline": res_inline,
          "res_ray": res_ray}


def test_seeds_and_task_layout(tmp_path):
  assert sweep.parse_seeds("5") == [0, 1, 2, 3, 4]
  assert sweep.parse_seeds("0,3") == [0, 3]
  t = sweep.make_tasks(str(tmp_path), ["kuhn_poker(players=3)"], ["cfr_plus"], [2],
                       max_steps=1)[0]
  assert t.out_dir == os.path.join(str(tmp_path), "kuhn_poker_players=3", "cfr_plus",
                                   "seed_2")
  with pytest.raises(ValueError, match="algo"):
    sweep.RunTask("kuhn_poker", "cfr", 0, str(tmp_path), max_steps=1)
  with pytest.raises(ValueError, match="max_steps"):
    sweep.RunTask("kuhn_poker", "cfr_plus", 0, str(tmp_path))


def test_inline_and_ray_give_the_same_runs(sweeps):
  for res in (sweeps["res_inline"], sweeps["res_ray"]):
    assert sorted((s["algo"], s["seed"], s["status"]) for s in res) == sorted(
        (a, s, "done") for a in ALGOS for s in SEEDS), res
  # Ray ran the tasks in worker processes, not in the driver.
  assert {s["pid"] for s in sweeps["res_ray"]}.isdisjoint({os.getpid()})
  a, b = _non_timing(sweeps["inline"]), _non_timing(sweeps["ray"])
  assert all(len(v) >= 2 for v in a.values())
  assert a == b
  lines = (sweeps["ray"] / sweep.SWEEP_LOG).read_text().splitlines()
  assert len(lines) == 4 and all(json.loads(x)["status"] == "done" for x in lines)


def test_every_run_dir_has_provenance_and_config(sweeps):
  for root in (sweeps["inline"], sweeps["ray"]):
    for t in _tasks(root, None):
      prov = json.loads(open(os.path.join(t.out_dir, "provenance.json")).read())
      assert prov["git_commit"] and prov["git_commit"] != "unknown"
      assert prov["versions"]["torch"] and prov["versions"]["open_spiel"]
      assert prov["seed"] == t.seed and prov["sweep_task"]["algo"] == t.algo
      cfg = json.loads(open(os.path.join(t.out_dir, "config.json")).read())
      assert cfg["seed"] == t.seed
      assert os.path.exists(os.path.join(t.out_dir, "DONE"))


def test_rerun_skips_finished_and_resumes_unfinished(sweeps):
  root = sweeps["inline"]
  before = _non_timing(root)
  n_lines = len((root / sweep.SWEEP_LOG).read_text().splitlines())
  armac0 = _tasks(root, None)[0]
  assert armac0.algo == "armac"
  os.unlink(os.path.join(armac0.out_dir, "DONE"))  # as if killed after its last checkpoint
  r = _cli("experiments.sweep", "--games=kuhn_poker", f"--algos={','.join(ALGOS)}",
           "--seeds=2", "--max_epochs=4", "--max_steps=40", f"--out_dir={root}",
           f"--armac_config={sweeps['cfg']}", "--ray_address=none")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "1 done, 3 skipped, 0 failed" in r.stdout
  lines = (root / sweep.SWEEP_LOG).read_text().splitlines()
  assert len(lines) == n_lines + 1
  last = json.loads(lines[-1])
  assert (last["algo"], last["seed"], last["status"], last["resumed"]) == (
      "armac", 0, "done", True)
  assert _non_timing(root) == before


def test_plot_cli_writes_curves_and_table(sweeps):
  root = sweeps["ray"]
  r = _cli("experiments.plot", str(root), "--n_boot=200")
  assert r.returncode == 0, r.stderr[-3000:]
  for name in ("curves_episodes.png", "curves_seconds.png", "table.md"):
    assert (root / name).stat().st_size > 0
  table = (root / "table.md").read_text()
  assert "## kuhn_poker" in table and "| ARMAC | 2 |" in table and "| ES-MCCFR | 2 |" in table


def test_task_eval_every_s_reaches_armac_and_baselines(tmp_path):
  """A task's eval_every_s is every algorithm's cadence (ARMAC's fixed, besides its config's
  eval_every epochs); without it ARMAC keeps its config's cadence: bounded by eval_fraction
  when it is the default one, as named where a YAML names it (Kuhn's)."""
  for algo in ("armac", "armac_sched_discrete", "os_mccfr"):
    spec = sweep.task_spec(sweep.RunTask("kuhn_poker", algo, 0, str(tmp_path / algo),
                                         time_budget_s=20.0, eval_every_s=4.0))
    assert (spec.eval_every_s, spec.eval_fraction) == (4.0, None), algo
  spec = sweep.task_spec(sweep.RunTask("kuhn_poker", "armac", 0, str(tmp_path / "d"),
                                       time_budget_s=20.0))
  assert spec.eval_every_s is None and spec.eval_fraction is None  # the YAML's eval_every
  assert spec.eval_every == spec.config.eval_every
  spec = sweep.task_spec(sweep.RunTask(ladder.rung("goofspiel_4").game, "armac", 0,
                                       str(tmp_path / "g"), time_budget_s=20.0))
  assert spec.eval_every_s is None and spec.eval_fraction == 0.1
