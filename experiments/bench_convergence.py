"""Convergence benchmark: ARMAC's paths against OpenSpiel's algorithms at equal budgets.

  python -m experiments.bench_convergence --out_dir=results/convergence \
      [--games=kuhn_poker,leduc_poker] [--algos=armac,deep_cfr,nfsp] [--seeds=3] \
      [--parallel=2] [--ray_address=local|none|auto|HOST:PORT]

A preset over the sweep (armac_spiel.runs.sweep): Kuhn for `--kuhn_s` (60) and Leduc for
`--leduc_s` (600) training seconds (evaluation excluded), seeds 0..N-1, `--parallel` runs at
a time (default 2, one per core). Writes D/<game>/<algo>/seed_<s>/ run directories,
D/sweep.jsonl, D/curves_seconds.png, D/curves_episodes.png (with the CFR+ reference),
D/table.md (at fixed training seconds), D/table_episodes.md (at fixed episode counts) and
D/results.json (every run's curve and the tables' values).

Algorithms (ASSUMES below says what each needs from the game):
  armac_states        ARMAC, tuned config: W and the actor fit per-information-state means
  armac_boot_tree     ARMAC's general path: W carries bootstrapped DCFR+ regret sums
                      (regret_fit=bootstrap), the actor fits replay rows; tree sampler
  armac_boot_pyspiel  the same on the pyspiel sampler (no compiled tree anywhere)
  armac_rows_tree     (not run by default) W and the actor fit replay rows, tree sampler
  armac_rows_pyspiel  (not run by default) the same on the pyspiel sampler
  os_mccfr, es_mccfr  OpenSpiel C++ outcome / external sampling MCCFR (simple averaging)
  deep_cfr, nfsp      OpenSpiel's PyTorch Deep CFR and NFSP
Episodes are each algorithm's own unit (ARMAC, NFSP, OS-MCCFR: played episodes;
ES-MCCFR, Deep CFR: sampled traversals; see armac_spiel/baselines/).
"""

import json
import os
import time

import numpy as np
from absl import app, flags

from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import curves, plots, sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "results/convergence", "Output directory.")
flags.DEFINE_float("kuhn_s", 60.0, "Training seconds on kuhn_poker.")
flags.DEFINE_float("leduc_s", 600.0, "Training seconds on leduc_poker.")
flags.DEFINE_float("other_s", 600.0, "Training seconds on any other game.")
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1.")
flags.DEFINE_list("algos", ["armac_states", "armac_boot_tree", "armac_boot_pyspiel",
                            "os_mccfr", "es_mccfr", "deep_cfr", "nfsp"],
                  "Algorithms (registered learners or aliases; see the module docstring).")
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "Games.")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")
flags.DEFINE_string("ray_address", "local", "local | none (inline, one at a time) | "
                    "auto | HOST:PORT.")

# Baselines evaluate on a training-time cadence, this many times per budget; Deep CFR's
# evaluation trains its strategy network from scratch (as OpenSpiel's solve() does), so it
# is evaluated more sparsely.
EVALS_PER_BUDGET = {"deep_cfr": 4, "nfsp": 60}
DEFAULT_EVALS = 60
CHECKPOINTS_S = (10, 30, 60, 120, 300, 600)
ASSUMES = {
    "armac_states": "sampled episodes; information-state ids of a compiled tree (W and the "
                    "actor fit exact per-state means)",
    "armac_boot_tree": "sampled episodes (compiled-tree sampler for speed); W re-fitted each "
                       "epoch on a bounded memory of distinct encodings seen, its targets "
                       "bootstrapped from W itself; the actor fits replay rows",
    "armac_boot_pyspiel": "sampled episodes through OpenSpiel's game API only; otherwise as "
                          "armac_boot_tree",
    "armac_rows_tree": "sampled episodes (compiled-tree sampler for speed); networks fit "
                       "replay rows",
    "armac_rows_pyspiel": "sampled episodes through OpenSpiel's game API only; networks fit "
                          "replay rows",
    "os_mccfr": "tabular regrets and averages per information state; sampled episodes",
    "es_mccfr": "tabular; explores every action of the traverser (needs game state copies)",
    "deep_cfr": "networks; external-sampling traversals (needs game state copies)",
    "nfsp": "networks; sampled episodes only",
}


def budget(game: str) -> float:
  return {"kuhn_poker": FLAGS.kuhn_s, "leduc_poker": FLAGS.leduc_s}.get(game, FLAGS.other_s)


def tasks(root: str) -> list:
  out = []
  for game in FLAGS.games:
    for seed in range(FLAGS.seeds):
      for algo in FLAGS.algos:
        b = budget(game)
        every = (None if sweep.learner_of(algo) == "armac"
                 else b / EVALS_PER_BUDGET.get(algo, DEFAULT_EVALS))
        out.append(sweep.RunTask(game, algo, seed, sweep.run_dir(root, game, algo, seed),
                                 time_budget_s=b, eval_every_s=every, plot=False))
  return out


def episode_checkpoints(runs_of_game: dict) -> list[float]:
  """Powers of ten up to the largest episode count any run reached."""
  top = max(rows[-1]["episodes"] for seeds in runs_of_game.values() for rows in seeds.values())
  return [10.0 ** k for k in range(3, int(np.log10(max(top, 1))) + 1)]


def main(argv):
  del argv
  root = os.path.abspath(FLAGS.out_dir)
  t0 = time.time()
  summaries = sweep.run_preset(
      tasks(root), root, "bench_convergence",
      {"games": FLAGS.games, "algos": FLAGS.algos, "seeds": FLAGS.seeds,
       "budgets_s": {g: budget(g) for g in FLAGS.games}},
      ray_address=FLAGS.ray_address, num_cpus=FLAGS.parallel)
  failed = [s for s in summaries if s["status"] == "failed"]
  paths = plots.plot_sweep(root, CHECKPOINTS_S, reference=True)
  runs = curves.load_runs(root)
  ep_tables = []
  res = {"wall_s": time.time() - t0, "budgets_s": {g: budget(g) for g in FLAGS.games},
         "runs": {}, "at_seconds": {}, "at_episodes": {}}
  for game, per_algo in runs.items():
    eps = episode_checkpoints(per_algo)
    ep_tables.append(curves.table({game: per_algo}, eps, x="episodes", unit="episodes",
                                  order=plots.algo_order, labels=plots.LABELS))
    for algo, seeds in per_algo.items():
      for seed, rows in seeds.items():
        key = f"{game}/{algo}/{seed}"
        res["runs"][key] = [(r["train_s"], r["episodes"], r["exploitability"]) for r in rows]
        res["at_seconds"][key] = dict(zip(map(str, CHECKPOINTS_S),
                                          curves.values_at(rows, CHECKPOINTS_S)))
        res["at_episodes"][key] = dict(zip(map(str, eps),
                                           curves.values_at(rows, eps, x="episodes")))
  assumes = ["## What each algorithm assumes", "", "| algo | assumes |", "|---|---|"]
  assumes += [f"| {a} | {ASSUMES.get(a, '')} |" for a in FLAGS.algos]
  ep_tables.append("\n".join(assumes) + "\n")
  atomic_write_text(os.path.join(root, "table_episodes.md"), "\n".join(ep_tables))
  atomic_write_text(os.path.join(root, "results.json"), json.dumps(res))
  with open(paths[-1], encoding="utf-8") as f:
    print(f.read())
  print("\n".join(ep_tables))
  for s in failed:
    print(f"failed: {s['game']}/{s['algo']}/seed_{s['seed']}: {s.get('error')}")
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
