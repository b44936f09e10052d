"""Convergence benchmark: ARMAC against OpenSpiel's Deep CFR and NFSP at equal budgets.

  python -m experiments.bench_convergence --out_dir=results/convergence

Kuhn for 60 s and Leduc for 600 s of training time (evaluation excluded), 3 seeds each,
every algorithm in the same run and on the same budget. Runs execute `--parallel` at a
time (default 2, one per core). Writes D/<game>/<algo>/seed_<s>/ run directories,
D/results.json (curves and the table), D/table.md and D/convergence.png.
"""

import json
import multiprocessing as mp
import os
import time

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "results/convergence", "Output directory.")
flags.DEFINE_float("kuhn_s", 60.0, "Training seconds on kuhn_poker.")
flags.DEFINE_float("leduc_s", 600.0, "Training seconds on leduc_poker.")
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1.")
flags.DEFINE_list("algos", ["armac", "deep_cfr", "nfsp"],
                  "Algorithms; armac_pyspiel = ARMAC on the pyspiel sampler (Leduc only).")
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "Games.")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")

TARGETS = {"kuhn_poker": 0.005, "leduc_poker": 0.15}
# Baselines evaluate on a wall-clock cadence; Deep CFR's evaluation trains its strategy
# network from scratch (as OpenSpiel's solve() does), so it is evaluated more sparsely.
EVAL_EVERY_S = {"deep_cfr": 150.0, "nfsp": 10.0}


def run_one(task):
  game, algo, seed, budget, out = task
  import torch
  torch.set_num_threads(1)
  if os.path.exists(os.path.join(out, "DONE")):
    return task
  if algo.startswith("armac"):
    from armac_spiel import trainer
    # armac_pyspiel: the same learner on the pyspiel lockstep sampler.
    over = {"sampler": "pyspiel"} if algo == "armac_pyspiel" else {}
    spec, _ = trainer.build_spec(game, seed, out, time_budget_s=budget, overrides=over,
                                 device="cpu",
                                 resume=os.path.exists(os.path.join(out, "checkpoint.pt")))
    trainer.train(spec)
  else:
    from armac_spiel.baselines import run_baseline
    every = EVAL_EVERY_S[algo] * budget / 600.0
    run_baseline(algo, game, seed, out, time_budget_s=budget, eval_every_s=every)
  return task


def algos_for(game, algos):
  return [a for a in algos if not (a == "armac_pyspiel" and game == "kuhn_poker")]


def value_at(rows, t):
  """Exploitability of the last evaluation at or before t training seconds."""
  best = None
  for r in rows:
    if r["train_s"] <= t + 1e-9 and r.get("exploitability") is not None:
      best = r["exploitability"]
  return best


def summarise(out_dir, games, algos, seeds, budgets):
  from armac_spiel.run_io import read_metrics
  res = {"runs": {}, "table": {}}
  for game in games:
    ckpts = [c for c in (10, 30, 60, 120, 300, 600) if c <= budgets[game]]
    for algo in algos_for(game, algos):
      curves = []
      for s in range(seeds):
        rows = read_metrics(os.path.join(out_dir, game, algo, f"seed_{s}", "metrics.jsonl"))
        curves.append([(r["train_s"], r["episodes"], r.get("exploitability")) for r in rows])
        res["runs"][f"{game}/{algo}/{s}"] = curves[-1]
      for c in ckpts:
        vals = [value_at([{"train_s": t, "exploitability": e} for t, _, e in cv], c)
                for cv in curves]
        vals = [v for v in vals if v is not None]
        res["table"][f"{game}/{algo}/{c}"] = {
            "mean": float(np.mean(vals)) if vals else None,
            "per_seed": vals}
  return res


def plot(res, out_dir, games, algos, seeds):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from armac_spiel.plotting import cfr_plus_curve
  fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4.3), squeeze=False)
  for ax, game in zip(axes[0], games):
    for algo in algos_for(game, algos):
      curves = [res["runs"][f"{game}/{algo}/{s}"] for s in range(seeds)]
      t_max = min(max(t for t, _, _ in cv) for cv in curves)
      grid = np.geomspace(1.0, max(t_max, 1.01), 60)
      vals = np.array([[value_at([{"train_s": t, "exploitability": e} for t, _, e in cv], g)
                        or np.nan for g in grid] for cv in curves])
      mean = np.nanmean(vals, 0)
      ax.plot(grid, mean, label=f"{algo} (mean of {seeds})")
      ax.fill_between(grid, np.nanmin(vals, 0), np.nanmax(vals, 0), alpha=0.2)
    ref = cfr_plus_curve(game)
    ax.plot([r[0] for r in ref], [r[2] for r in ref], "k--", label="CFR+ (pyspiel, tabular)")
    ax.axhline(TARGETS.get(game, np.nan), color="r", ls=":", label="target")
    ax.set(xscale="log", yscale="log", xlabel="training seconds (evaluation excluded)",
           ylabel="exploitability (chips)", title=game)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "convergence.png"), dpi=110)
  plt.close(fig)


def table_md(res, games, algos, budgets):
  lines = []
  for game in games:
    ckpts = [c for c in (10, 30, 60, 120, 300, 600) if c <= budgets[game]]
    lines += [f"**{game}** (mean exploitability over seeds; target "
              f"{TARGETS.get(game)} at {budgets[game]:.0f} s)", "",
              "| algo | " + " | ".join(f"{c} s" for c in ckpts) + " |",
              "|---|" + "---|" * len(ckpts)]
    for algo in algos_for(game, algos):
      cells = []
      for c in ckpts:
        m = res["table"][f"{game}/{algo}/{c}"]["mean"]
        cells.append("n/a" if m is None else f"{m:.4f}")
      lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def main(argv):
  del argv
  budgets = {"kuhn_poker": FLAGS.kuhn_s, "leduc_poker": FLAGS.leduc_s}
  tasks = [(g, a, s, budgets[g], os.path.join(FLAGS.out_dir, g, a, f"seed_{s}"))
           for g in FLAGS.games for s in range(FLAGS.seeds) for a in FLAGS.algos
           if not (a == "armac_pyspiel" and g == "kuhn_poker")]
  t0 = time.time()
  with mp.get_context("spawn").Pool(FLAGS.parallel, maxtasksperchild=1) as pool:
    for task in pool.imap_unordered(run_one, tasks):
      logging.info("finished %s/%s/seed_%d after %.0f s wall", task[0], task[1], task[2],
                   time.time() - t0)
  res = summarise(FLAGS.out_dir, FLAGS.games, FLAGS.algos, FLAGS.seeds, budgets)
  res["budgets_s"] = budgets
  res["wall_s"] = time.time() - t0
  with open(os.path.join(FLAGS.out_dir, "results.json"), "w") as f:
    json.dump(res, f)
  plot(res, FLAGS.out_dir, FLAGS.games, FLAGS.algos, FLAGS.seeds)
  md = table_md(res, FLAGS.games, FLAGS.algos, budgets)
  with open(os.path.join(FLAGS.out_dir, "table.md"), "w") as f:
    f.write(md)
  print(md)


if __name__ == "__main__":
  app.run(main)
