"""The run layer: one loop for every Learner, resume, load_run, sweep and plot, imports."""

import ast
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from open_spiel.python.algorithms import exploitability as os_exploitability

from armac_spiel import runs
from experiments import compare_runs
from armac_spiel.runs import plots, rundir, sweep
from games import load_game
from games.tree import DECISION, compile_tree, exact_q
from tests.conftest import REPO, TINY


class ToyRM:
  """Tabular CFR: regret matching on exact counterfactual values (a toy Learner)."""

  def __init__(self, game_string, seed, device="cpu", scale=1.0):
    self.game_string, self.episodes, self.scale = game_string, 0, float(scale)
    self.tree = t = compile_tree(game_string)
    self.nodes = torch.nonzero(t.kind == DECISION).squeeze(1)
    self.regret = torch.zeros(t.info_legal.shape, dtype=torch.float64)
    self.avg = torch.zeros_like(self.regret)

  def _norm(self, x):
    x = x.clamp_min(0) * self.tree.info_legal
    tot = x.sum(1, keepdim=True)
    return torch.where(tot > 0, x / tot.clamp_min(1e-300), self.tree.uniform_policy())

  def step(self):
    t, n = self.tree, self.nodes
    pi = self._norm(self.regret)
    s, p = t.infostate[n], t.player[n]
    q = exact_q(t, pi)[n] * (1 - 2 * p[:, None]).double()
    v = (pi[s] * q).sum(1, keepdim=True)
    reach = t.reach(pi)[n]
    others = reach.scatter(1, p[:, None], 1.0).prod(1, keepdim=True)
    self.regret.index_add_(0, s, self.scale * others * (q - v) * t.info_legal[s])
    self.avg.index_add_(0, s, reach.gather(1, p[:, None]) * pi[s])
    self.episodes += 1
    return {"regret_max": float(self.regret.max())}

  def average_table(self):
    return self._norm(self.avg)

  def state_dict(self):
    return {"regret": self.regret, "avg": self.avg, "episodes": self.episodes}

  def load_state_dict(self, d):
    self.regret, self.avg, self.episodes = d["regret"], d["avg"], int(d["episodes"])


def test_toy_learner_through_train_sweep_and_plot(tmp_path):
  runs.register_learner("toy_rm", ToyRM)
  spec = runs.resolve_spec("toy_rm", "kuhn_poker", 0, str(tmp_path / "one"), max_steps=40,
                           eval_every=10, sets={"scale": 2.0})
  rows = runs.run(spec)
  assert [r["step"] for r in rows] == [10, 20, 30, 40]
  assert rows[-1]["exploitability"] < 0.05 and rows[-1]["regret_max"] > 0
  assert os.path.exists(tmp_path / "one" / "policy.json")
  root = tmp_path / "sweep"
  tasks = sweep.make_tasks(str(root), ["kuhn_poker"], ["toy_rm", "cfr_plus"], [0, 1],
                           max_steps=20, eval_every_steps=5, plot=False)
  out = sweep.run_sweep(tasks, str(root), ray_address="none")
  assert sorted(s["status"] for s in out) == ["done"] * 4
  paths = plots.plot_sweep(str(root), checkpoints_s=(0.001,))
  assert all(os.path.getsize(p) > 0 for p in paths)
  table = pathlib.Path(paths[-1]).read_text()
  assert "toy_rm" in table and "CFR+" in table


def test_toy_learner_rejects_unknown_hyperparameter(tmp_path):
  runs.register_learner("toy_rm", ToyRM)
  with pytest.raises(TypeError, match="bogus"):
    runs.run(runs.resolve_spec("toy_rm", "kuhn_poker", 0, str(tmp_path), max_steps=1,
                               sets={"bogus": 1}))


@pytest.mark.parametrize("bad, match", [
    ({"time_budget_s": -5}, "--time_budget_s"), ({"time_budget_s": 0}, "--time_budget_s"),
    ({"max_steps": -1, "time_budget_s": 1.0}, "--max_"),
    ({"max_steps": 3, "eval_every": -2}, "--eval_every"),
    ({"max_steps": 3, "eval_every": 0}, "--eval_every"), ({}, "budget")])
def test_budgets_are_validated(tmp_path, bad, match):
  with pytest.raises(runs.spec.ConfigError, match=match):
    runs.resolve_spec("es_mccfr", "kuhn_poker", 0, str(tmp_path), **bad)


def test_unknown_algorithm_names_the_flag(tmp_path):
  with pytest.raises(runs.spec.ConfigError, match="--algo='nope'.*armac"):
    runs.resolve_spec("nope", "kuhn_poker", 0, str(tmp_path), max_steps=1)


def test_load_run_policy_matches_last_metrics_line(kuhn_armac_run):
  learner = runs.load_run(kuhn_armac_run)
  last = rundir.read_metrics(os.path.join(kuhn_armac_run, rundir.METRICS))[-1]
  pol = learner.average_policy()
  expl = os_exploitability.exploitability(load_game("kuhn_poker").game, pol)
  assert abs(expl - last["exploitability"]) < 1e-6


def test_load_run_of_a_baseline(tmp_path):
  spec = runs.resolve_spec("cfr_plus", "leduc_poker", 0, str(tmp_path), max_steps=5,
                           plot=False)
  last = runs.run(spec)[-1]
  pol = runs.load_run(str(tmp_path)).average_policy()
  expl = os_exploitability.exploitability(load_game("leduc_poker").game, pol)
  assert abs(expl - last["exploitability"]) < 1e-9


def _train_cmd(out, *extra):
  return [sys.executable, "-m", "experiments.train", "--algo=es_mccfr",
          "--game_name=leduc_poker", "--seed=4", "--eval_every=1", "--plot=false",
          f"--out_dir={out}", "--set=iterations_per_step=300", *extra]


def test_baseline_killed_and_resumed_keeps_its_metrics_prefix(tmp_path):
  """SIGKILL mid-run, then --resume: same lines as an uninterrupted run (timing aside)."""
  env = {**os.environ, "PYTHONPATH": REPO}
  ref, run = tmp_path / "ref", tmp_path / "run"
  subprocess.run(_train_cmd(ref, "--max_steps=40"), cwd=REPO, env=env, check=True,
                 capture_output=True)
  proc = subprocess.Popen(_train_cmd(run, "--max_steps=40"), cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics = run / rundir.METRICS
  deadline = time.time() + 120
  while time.time() < deadline and len(rundir.read_metrics(str(metrics))) < 5:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  n_killed = len(rundir.read_metrics(str(metrics)))
  assert 5 <= n_killed < 40, "the run must be killed part-way"
  assert not (run / rundir.DONE).exists()
  subprocess.run(_train_cmd(run, "--max_steps=40", "--resume"), cwd=REPO, env=env,
                 check=True, capture_output=True)
  got = rundir.strip_timing(rundir.read_metrics(str(metrics)))
  want = rundir.strip_timing(rundir.read_metrics(str(ref / rundir.METRICS)))
  assert len(want) == 40 and got == want
  assert (run / "policy.json").read_bytes() == (ref / "policy.json").read_bytes()


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The repository modules a file imports, function-level imports included.
  `from P import m` names the module P.m when it is one, else P."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      subs = {f"{node.module}.{a.name}" for a in node.names} & modules
      out.update(subs)
      if len(subs) < len(node.names):
        out.add(node.module)
  return out & modules


def _module_graph() -> dict[str, set[str]]:
  files = {}
  for top in ("armac_spiel", "games", "experiments"):
    for path in (pathlib.Path(REPO) / top).rglob("*.py"):
      rel = path.relative_to(REPO).with_suffix("")
      name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
      files[name] = path
  names = set(files)
  return {m: _imports(p, names) - {m} for m, p in files.items()}


def test_no_import_cycles_and_the_library_never_imports_experiments():
  graph = _module_graph()
  up = sorted((m, d) for m, ds in graph.items() for d in ds
              if not m.startswith("experiments") and d.startswith("experiments"))
  assert not up, f"library modules import experiments/: {up}"
  # Tarjan-free check: depth-first search for a back edge.
  state, cycles = {}, []

  def visit(m, stack):
    state[m] = 1
    for d in sorted(graph[m]):
      if state.get(d) == 1:
        cycles.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d, stack + [d])
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycles, f"import cycles: {cycles}"


def test_import_walk_sees_the_edges():
  """The walker itself finds package, function-level and experiments edges."""
  graph = _module_graph()
  assert "armac_spiel.runs.loop" in graph["armac_spiel.runs"]
  assert "games.tree" in graph["games"]
  assert any(d.startswith("armac_spiel") for d in graph["experiments.train"])


def test_a_yaml_section_named_after_an_armac_variant_applies_to_that_variant_only(tmp_path):
  """A YAML mapping named after an ARMAC algorithm (an alias, or armac) holds that
  variant's values: over the top level, under the alias's fixed overrides and --set."""
  path = tmp_path / "c.yaml"
  path.write_text("episodes_per_epoch: 1024\ncritic_steps: 4\n"
                  "armac_boot_tree: {episodes_per_epoch: 256, regret_fit: states}\n"
                  "armac: {critic_steps: 6}\n")
  plain = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "a"), config_path=str(path), max_steps=1)
  assert (plain.config.episodes_per_epoch, plain.config.critic_steps) == (1024, 6)
  boot = runs.resolve_spec("armac_boot_tree", "kuhn_poker", 0, str(tmp_path / "b"),
                      config_path=str(path), max_steps=1)
  assert (boot.config.episodes_per_epoch, boot.config.critic_steps) == (256, 4)
  assert boot.config.regret_fit == "bootstrap"  # the alias's own override wins
  states = runs.resolve_spec("armac_states", "kuhn_poker", 0, str(tmp_path / "c"),
                        config_path=str(path), sets={"episodes_per_epoch": 512}, max_steps=1)
  assert states.config.episodes_per_epoch == 512
  tuned = {a: runs.resolve_spec(a, "kuhn_poker", 0, str(tmp_path / a), max_steps=1).config
           for a in ("armac_states", "armac_boot_tree")}
  assert tuned["armac_states"].regret_lstsq > 0 and tuned["armac_boot_tree"].regret_lstsq == 0


def _write_metrics(run_dir, rows):
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, rundir.METRICS), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def test_compare_runs_ignores_timing_fields_and_names_the_first_other_difference(tmp_path):
  line = {"epoch": 5, "exploitability": 0.25, "scheduler.interior_reach": 0.5}
  for name, t in (("a", 1.0), ("b", 2.5)):
    _write_metrics(str(tmp_path / name), [{**line, **{k: t for k in rundir.TIMING_FIELDS}}])
  assert compare_runs.compare(str(tmp_path / "a"), str(tmp_path / "b"))["match"]
  _write_metrics(str(tmp_path / "c"), [{**line, "exploitability": 0.5}])
  out = compare_runs.compare(str(tmp_path / "a"), str(tmp_path / "c"))
  assert not out["match"] and out["first_difference"]["fields"] == ["exploitability"]


def test_every_timing_metric_of_a_scheduler_run_is_a_timing_field(tmp_path):
  """Seconds (`*_s`) and milliseconds (`*_ms*`) depend on the machine: compare_runs must
  skip every one a scheduler run writes (scheduler.train_s among them)."""
  spec = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "run"), sets=dict(TINY),
                           max_steps=2, eval_every=1, scheduler="discrete", device="cpu",
                           plot=False)
  rows = runs.run(spec)
  timing = {k for r in rows for k in r if k.endswith("_s") or "_ms" in k}
  assert "scheduler.train_s" in timing
  assert timing <= set(rundir.TIMING_FIELDS), timing - set(rundir.TIMING_FIELDS)


def test_each_evaluation_runs_under_the_budget_deadline():
  """The deadline keeps the evaluations within the fraction: with 100 s trained and 5 s
  evaluated at 10%, this evaluation may take (0.1 * 105 - 5) / 0.9 = 6.11 s; none when the
  budget is spent, no deadline at a fixed cadence; evaluation.seconds_left reads it."""
  from armac_spiel import evaluation
  from armac_spiel.runs import loop
  clock = {"train_s": 100.0, "eval_s": 5.0}
  assert loop.evaluation_deadline(clock, 0.1, 50.0) == pytest.approx(50.0 + 5.5 / 0.9)
  assert loop.evaluation_deadline({"train_s": 10.0, "eval_s": 5.0}, 0.1, 50.0) == 50.0
  assert loop.evaluation_deadline(clock, None, 50.0) is None
  assert evaluation.seconds_left() is None
  with evaluation.deadline(time.perf_counter() + 100.0):
    assert 99.0 < evaluation.seconds_left() <= 100.0
  assert evaluation.seconds_left() is None


def test_a_due_evaluation_waits_for_a_near_final_one():
  """With the default cadence, an evaluation due when the final one is nearer than half
  the stretch since the last waits for it (by seconds or by steps)."""
  from armac_spiel.runs import loop
  clock = {"train_s": 566.0, "last_eval_train_s": 320.0, "steps": 124, "last_eval_step": 74}
  assert loop.final_is_near(clock, 600.0, None)        # 34 s left < 246 / 2
  assert not loop.final_is_near(clock, 800.0, None)    # 234 s left
  assert loop.final_is_near(clock, None, 140)          # 16 steps left < 50 / 2
  assert not loop.final_is_near(clock, None, 150)      # 26 steps left
  assert not loop.final_is_near(clock, None, None)
