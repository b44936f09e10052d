"""Scheduler off vs continuous vs discrete (+ meta-regret) at an equal training-time budget.

  python -m experiments.bench_scheduler --out_dir=D [--seconds=600] [--seeds=3] \
      [--game_name=leduc_poker] [--config=experiments/configs/leduc_scheduler_discrete.yaml]

Each (mode, seed) is one experiments.train run (build_spec + trainer.train with
scheduler_factory) in D/<mode>/seed<k>, trained for --seconds (evaluation excluded). Writes
- D/results.json: per mode, the final exploitability of the average policy and of the mixed
  policy per seed and their means, and the scheduler's cost per epoch in ms (time in
  behaviour() + train_step() over the epochs, timed inside the adapter);
- D/curves.png: average-policy exploitability vs training seconds, mean over seeds per mode
  (on the union of evaluation times, each seed's curve held at its last value), log-log;
- D/table.md: the same numbers as a Markdown table.
The scheduler sections come from --config (default: the Leduc discrete YAML); each mode runs
that suite switched to the mode, and the ARMAC keys of the YAML are shared by all modes.
"""

import json
import os
import sys

import numpy as np
import torch
from absl import app, flags

from armac_spiel import trainer
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler_glue import scheduler_factory
from experiments.train import build_spec

# --out_dir, --game_name, --config, --eval_every, --device, --threads: experiments.train's.
FLAGS = flags.FLAGS
flags.DEFINE_float("seconds", 600.0, "Training seconds per run (evaluation excluded).")
flags.DEFINE_integer("seeds", 3, "Seeds per mode (0..seeds-1).")
flags.DEFINE_list("modes", ["off", "continuous", "discrete"], "Modes to run.")
FLAGS.set_default("game_name", "leduc_poker")
FLAGS.set_default("config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "configs", "leduc_scheduler_discrete.yaml"))

KEY_AVG, KEY_MIX = "exploitability", "exploitability_mixed"


def run_one(mode, seed, out_dir, game, config, seconds, eval_every, device) -> list[dict]:
  """One training run; returns its metrics lines (resumes a run left unfinished)."""
  overrides = {"scheduler_mode": mode}
  if eval_every is not None:
    overrides["eval_every"] = eval_every
  resume = os.path.exists(os.path.join(out_dir, trainer.CHECKPOINT))
  spec, suite = build_spec(game, seed, out_dir, seconds, config, overrides, device, resume)
  suite = (suite or SchedulerSuiteConfig()).with_mode(mode)
  spec.plot = False
  if os.path.exists(os.path.join(out_dir, "DONE")):
    from armac_spiel import run_io
    return run_io.read_metrics(os.path.join(out_dir, "metrics.jsonl"))
  return trainer.train(spec, make_scheduler=scheduler_factory(suite))


def summarise(runs: dict) -> dict:
  """runs[mode][seed] = metrics lines -> results.json content."""
  out = {}
  for mode, by_seed in runs.items():
    finals = {s: rows[-1] for s, rows in by_seed.items()}
    avg = {s: r.get(KEY_AVG) for s, r in finals.items()}
    mix = {s: r.get(KEY_MIX) for s, r in finals.items()}
    cost = {s: r.get("scheduler.cost_ms_per_epoch", 0.0) for s, r in finals.items()}

    def mean(d):
      vals = [v for v in d.values() if v is not None]
      return float(np.mean(vals)) if vals else None

    out[mode] = {"exploitability": avg, "exploitability_mean": mean(avg),
                 "exploitability_mixed": mix, "exploitability_mixed_mean": mean(mix),
                 "cost_ms_per_epoch": cost, "cost_ms_per_epoch_mean": mean(cost),
                 "epochs": {s: r["epoch"] for s, r in finals.items()},
                 "train_s": {s: r["train_s"] for s, r in finals.items()}}
  return out


def mean_curve(by_seed: dict) -> tuple[np.ndarray, np.ndarray]:
  """Mean over seeds of exploitability vs train_s, each seed held at its last value."""
  curves = []
  for rows in by_seed.values():
    t = np.array([r["train_s"] for r in rows if r.get(KEY_AVG) is not None])
    y = np.array([r[KEY_AVG] for r in rows if r.get(KEY_AVG) is not None])
    curves.append((t, y))
  grid = np.unique(np.concatenate([t for t, _ in curves]))
  grid = grid[grid > 0]
  ys = [y[np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(y) - 1)]
        for t, y in curves]
  return grid, np.mean(ys, axis=0)


def plot(runs: dict, path: str, game: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for mode, by_seed in runs.items():
    t, y = mean_curve(by_seed)
    if len(t):
      ax.plot(t, y, label=f"{mode} ({len(by_seed)} seeds)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training seconds")
  ax.set_ylabel("exploitability (average policy)")
  ax.set_title(f"ARMAC scheduler modes, {game}")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def table(results: dict, seconds: float, game: str) -> str:
  def f(x):
    return "n/a" if x is None else f"{x:.4f}"
  lines = [f"Game {game}, {seconds:g} s training per run.", "",
           "| mode | seeds | epochs (mean) | exploitability (avg policy) | "
           "exploitability (mixed policy) | scheduler cost (ms/epoch) |",
           "|---|---|---|---|---|---|"]
  for mode, r in results.items():
    seeds = sorted(r["exploitability"])
    per = ", ".join(f(r["exploitability"][s]) for s in seeds)
    per_mix = ", ".join(f(r["exploitability_mixed"][s]) for s in seeds)
    lines.append(f"| {mode} | {len(seeds)} | {np.mean(list(r['epochs'].values())):.0f} | "
                 f"{f(r['exploitability_mean'])} ({per}) | "
                 f"{f(r['exploitability_mixed_mean'])} ({per_mix}) | "
                 f"{r['cost_ms_per_epoch_mean']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  torch.set_num_threads(FLAGS.threads)
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  runs = {}
  for mode in FLAGS.modes:
    runs[mode] = {}
    for seed in range(FLAGS.seeds):
      d = os.path.join(FLAGS.out_dir, mode, f"seed{seed}")
      runs[mode][seed] = run_one(mode, seed, d, FLAGS.game_name, FLAGS.config, FLAGS.seconds,
                                 FLAGS.eval_every, FLAGS.device)
      print(f"{mode} seed {seed}: {runs[mode][seed][-1].get(KEY_AVG)}", flush=True)
  results = summarise(runs)
  meta = {"game": FLAGS.game_name, "seconds": FLAGS.seconds, "seeds": FLAGS.seeds,
          "config": FLAGS.config, "device": trainer.resolve_device(FLAGS.device)}
  with open(os.path.join(FLAGS.out_dir, "results.json"), "w") as f:
    json.dump({"meta": meta, "modes": results}, f, indent=1)
  plot(runs, os.path.join(FLAGS.out_dir, "curves.png"), FLAGS.game_name)
  md = table(results, FLAGS.seconds, FLAGS.game_name)
  with open(os.path.join(FLAGS.out_dir, "table.md"), "w") as f:
    f.write(md)
  print(md)
  return 0


if __name__ == "__main__":
  app.run(main)
