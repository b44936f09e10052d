"""Convergence benchmark: ARMAC's three paths against OpenSpiel's MCCFR, Deep CFR and NFSP.

  python -m experiments.bench_convergence --out_dir=results/convergence

Kuhn for 60 s and Leduc for 600 s of training time (evaluation excluded), 3 seeds each,
every algorithm in the same run and on the same budget. Runs execute `--parallel` at a
time (default 2, one per core). Writes D/<game>/<algo>/seed_<s>/ run directories,
D/results.json (curves and the tables), D/table.md (exploitability against training
seconds and against episodes, and what each algorithm assumes) and D/convergence.png
(both axes).

Algorithms (ASSUMES below says what each needs from the game):
  armac_states        ARMAC, tuned config: W and the actor fit per-information-state means
  armac_rows_tree     ARMAC with row-wise fits (regret_fit=actor_fit=rows), tree sampler
  armac_rows_pyspiel  the same on the pyspiel sampler (no compiled tree anywhere)
  os_mccfr, es_mccfr  OpenSpiel C++ outcome / external sampling MCCFR (simple averaging)
  deep_cfr, nfsp      OpenSpiel's PyTorch Deep CFR and NFSP
Episodes are each algorithm's own unit (ARMAC, NFSP, OS-MCCFR: played episodes;
ES-MCCFR, Deep CFR: sampled traversals; see armac_spiel/baselines.py).
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
flags.DEFINE_list("algos", ["armac_states", "armac_rows_tree", "armac_rows_pyspiel",
                           "os_mccfr", "es_mccfr", "deep_cfr", "nfsp"],
                  "Algorithms (see the module docstring).")
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "Games.")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")

TARGETS = {"kuhn_poker": 0.005, "leduc_poker": 0.15}
# Baselines evaluate on a wall-clock cadence; Deep CFR's evaluation trains its strategy
# network from scratch (as OpenSpiel's solve() does), so it is evaluated more sparsely.
EVAL_EVERY_S = {"deep_cfr": 150.0, "nfsp": 10.0, "os_mccfr": 10.0, "es_mccfr": 10.0}
# Config overrides of each ARMAC arm (on top of the game's tuned config).
ARMAC_ARMS = {
    "armac_states": {"sampler": "tree"},
    "armac_rows_tree": {"sampler": "tree", "regret_fit": "rows", "actor_fit": "rows",
                        "regret_discount": "none"},
    "armac_rows_pyspiel": {"sampler": "pyspiel", "regret_fit": "rows", "actor_fit": "rows",
                           "regret_discount": "none"},
}
ASSUMES = {
    "armac_states": "sampled episodes; information-state ids of a compiled tree (W and the "
                    "actor fit exact per-state means)",
    "armac_rows_tree": "sampled episodes (compiled-tree sampler for speed); networks fit "
                       "replay rows",
    "armac_rows_pyspiel": "sampled episodes through OpenSpiel's game API only; networks fit "
                          "replay rows",
    "os_mccfr": "tabular regrets and averages per information state; sampled episodes",
    "es_mccfr": "tabular; explores every action of the traverser (needs game state copies)",
    "deep_cfr": "networks; external-sampling traversals (needs game state copies)",
    "nfsp": "networks; sampled episodes only",
}
EPISODE_MARKS = (1e4, 1e5, 1e6, 1e7, 1e8, 1e9)


def run_one(task):
  game, algo, seed, budget, out = task
  import torch
  torch.set_num_threads(1)
  if os.path.exists(os.path.join(out, "DONE")):
    return task
  if algo in ARMAC_ARMS:
    from armac_spiel import trainer
    over = ARMAC_ARMS[algo]
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
  del game
  return list(algos)


def value_at(rows, t, key="train_s"):
  """Exploitability of the last evaluation at or before t (training seconds, or episodes
  with key='episodes')."""
  best = None
  for r in rows:
    if r[key] <= t + 1e-9 and r.get("exploitability") is not None:
      best = r["exploitability"]
  return best


def _rows(curve):
  return [{"train_s": t, "episodes": n, "exploitability": e} for t, n, e in curve]


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
        vals = [value_at(_rows(cv), c) for cv in curves]
        vals = [v for v in vals if v is not None]
        res["table"][f"{game}/{algo}/{c}"] = {
            "mean": float(np.mean(vals)) if vals else None,
            "per_seed": vals}
      for m in EPISODE_MARKS:
        vals = [value_at(_rows(cv), m, "episodes") for cv in curves]
        if any(v is None for v in vals) or any(max(n for _, n, _ in cv) < m for cv in curves):
          continue  # some seed has no evaluation this early, or stopped before m
        res.setdefault("table_episodes", {})[f"{game}/{algo}/{m:.0e}"] = {
            "mean": float(np.mean(vals)), "per_seed": vals}
  return res


def plot(res, out_dir, games, algos, seeds):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from armac_spiel.plotting import cfr_plus_curve
  fig, axes = plt.subplots(2, len(games), figsize=(6 * len(games), 8.6), squeeze=False)
  for row, (key, xlabel) in enumerate((("train_s", "training seconds (evaluation excluded)"),
                                       ("episodes", "episodes (each algorithm's unit)"))):
    for ax, game in zip(axes[row], games):
      for algo in algos_for(game, algos):
        curves = [res["runs"][f"{game}/{algo}/{s}"] for s in range(seeds)]
        col = 0 if key == "train_s" else 1
        x_max = min(max(r[col] for r in cv) for cv in curves)
        x_min = 1.0 if key == "train_s" else max(1.0, min(min(r[col] for r in cv)
                                                          for cv in curves))
        grid = np.geomspace(x_min, max(x_max, x_min * 1.01), 60)
        vals = np.array([[value_at(_rows(cv), g, key) or np.nan for g in grid]
                         for cv in curves])
        with np.errstate(all="ignore"):
          mean = np.nanmean(vals, 0)
        ax.plot(grid, mean, label=f"{algo} (mean of {seeds})")
        ax.fill_between(grid, np.nanmin(vals, 0), np.nanmax(vals, 0), alpha=0.2)
      if key == "train_s":
        ref = cfr_plus_curve(game)
        ax.plot([r[0] for r in ref], [r[2] for r in ref], "k--",
                label="CFR+ (pyspiel, tabular)")
      ax.axhline(TARGETS.get(game, np.nan), color="r", ls=":", label="target")
      ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="exploitability (chips)",
             title=game)
      ax.grid(True, which="both", alpha=0.3)
      ax.legend(fontsize=7)
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
    lines += ["", f"**{game}** against episodes (mean over seeds; each algorithm's unit)", "",
              "| algo | " + " | ".join(f"{m:.0e}" for m in EPISODE_MARKS) + " |",
              "|---|" + "---|" * len(EPISODE_MARKS)]
    for algo in algos_for(game, algos):
      cells = []
      for m in EPISODE_MARKS:
        v = res.get("table_episodes", {}).get(f"{game}/{algo}/{m:.0e}")
        cells.append("n/a" if v is None else f"{v['mean']:.4f}")
      lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    lines.append("")
  lines += ["| algo | assumes |", "|---|---|"]
  lines += [f"| {a} | {ASSUMES.get(a, '')} |" for a in algos]
  return "\n".join(lines)


def main(argv):
  del argv
  budgets = {"kuhn_poker": FLAGS.kuhn_s, "leduc_poker": FLAGS.leduc_s}
  unknown = sorted(set(FLAGS.algos) - set(ASSUMES))
  if unknown:
    raise app.UsageError(f"--algos: unknown {unknown}; allowed: {sorted(ASSUMES)}",
                         exitcode=2)
  tasks = [(g, a, s, budgets[g], os.path.join(FLAGS.out_dir, g, a, f"seed_{s}"))
           for g in FLAGS.games for s in range(FLAGS.seeds) for a in FLAGS.algos]
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
