"""The scheduler's arms at an equal training-time budget (its cost counted in training).

  python -m experiments.bench_scheduler --out_dir=D [--seconds=600] [--seeds=3] \
      [--game_name=leduc_poker] [--config=experiments/configs/leduc_scheduler_discrete.yaml] \
      [--arms=armac,armac_sched_continuous,armac_sched_discrete] [--parallel=2]

A preset over the sweep (armac_spiel.runs.sweep): every arm (an algorithm name: armac with
the scheduler off, or an alias that fixes the scheduler mode) runs each seed with the same
YAML into D/<game>/<arm>/seed_<s>/. Writes D/scheduler_table.md (per arm: final exploitability of the
average, current and mixed policies, mean [95% CI] over seeds, and the scheduler's cost in
ms per epoch), D/results.json, and the sweep curves (D/curves_*.png).
"""

import json
import os

import numpy as np
from absl import app, flags

from armac_spiel import progress
from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import curves, plots, sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Output directory.")
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_string("config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "configs", "leduc_scheduler_discrete.yaml"),
                    "ARMAC + scheduler YAML shared by every arm.")
flags.DEFINE_float("seconds", 600.0, "Training seconds per run (evaluation excluded).")
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1.")
flags.DEFINE_list("arms", ["armac", "armac_sched_continuous", "armac_sched_discrete"],
                  "Arms: algorithm names (armac_spiel.runs.spec.ALIASES).")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")
flags.DEFINE_string("ray_address", "local", "local | none | auto | HOST:PORT.")

KEYS = ("exploitability", "exploitability_current", "exploitability_mixed",
        "scheduler.cost_ms_per_epoch")


def summarise(runs: dict) -> dict:
  """{arm: {key: {"per_seed", "mean", "lo", "hi"}}} of the runs' last lines."""
  out = {}
  for arm, seeds in runs.items():
    out[arm] = {}
    for key in KEYS:
      vals = [rows[-1].get(key) for rows in seeds.values()]
      vals = [v for v in vals if v is not None]
      if not vals:
        continue
      mean, lo, hi = curves.bootstrap_mean(np.array(vals, dtype=float)[:, None])
      out[arm][key] = {"per_seed": vals, "mean": float(mean[0]), "lo": float(lo[0]),
                       "hi": float(hi[0])}
    out[arm]["epochs"] = [rows[-1]["epoch"] for rows in seeds.values()]
  return out


def table(results: dict) -> str:
  head = ["arm", "seeds", "epochs (mean)"] + [k for k in KEYS]
  lines = [f"{FLAGS.game_name}, {FLAGS.seconds:g} s of training per run; last evaluation, "
           "mean [95% bootstrap CI] over seeds.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for arm, r in results.items():
    cells = [arm, str(len(r["epochs"])), f"{np.mean(r['epochs']):.0f}"]
    for k in KEYS:
      v = r.get(k)
      cells.append("n/a" if v is None else f"{v['mean']:.4g} [{v['lo']:.4g}, {v['hi']:.4g}]")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if not FLAGS.out_dir:
    raise app.UsageError("--out_dir is required")
  root = os.path.abspath(FLAGS.out_dir)
  tasks = [sweep.RunTask(FLAGS.game_name, arm, seed,
                         sweep.run_dir(root, FLAGS.game_name, arm, seed),
                         time_budget_s=FLAGS.seconds, armac_config=FLAGS.config, plot=False)
           for seed in range(FLAGS.seeds) for arm in FLAGS.arms]
  sweep.write_sweep_info(root, {"preset": "bench_scheduler", "arms": FLAGS.arms,
                                "config": FLAGS.config, "seconds": FLAGS.seconds})
  bar = progress.SweepProgress(len(tasks), desc="bench_scheduler")
  try:
    summaries = sweep.run_sweep(tasks, root, ray_address=FLAGS.ray_address,
                                num_cpus=FLAGS.parallel, progress=bar)
  finally:
    bar.close()
  plots.plot_sweep(root, (10, 30, 60, 120, 300, 600))
  results = summarise(curves.load_runs(root).get(FLAGS.game_name, {}))
  atomic_write_text(os.path.join(root, "results.json"), json.dumps(results, indent=1))
  md = table(results)
  atomic_write_text(os.path.join(root, "scheduler_table.md"), md)
  print(md)
  return 1 if any(s["status"] == "failed" for s in summaries) else 0


if __name__ == "__main__":
  app.run(main)
