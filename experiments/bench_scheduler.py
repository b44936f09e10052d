"""The scheduler's arms at an equal training-time budget (scheduler cost counted in it).

  python -m experiments.bench_scheduler --out_dir=D [--seconds=600] [--seeds=3] \
      [--first_seed=0] [--arms=off,br_discrete,br_continuous,br_critic] \
      [--game_name=leduc_poker] [--config=experiments/configs/leduc_scheduler_discrete.yaml]

Arms (the ARMAC keys and scheduler sections of --config, switched per arm):
  off            no scheduler;
  br_discrete    utility_computation.strategy best_response, discrete network;
  br_continuous  best_response, continuous network;
  br_critic      the model-free best-response critic, discrete network.
Each (arm, seed) is one run (build_spec + trainer.train, as experiments.train) in
D/<arm>/seed<k>, trained for --seconds (evaluation excluded; the scheduler's update runs
inside the epoch, so its cost is training time); a run left unfinished is resumed. Writes
D/results.json (per arm and seed: the last evaluation's exploitability of pi_avg, pi_rm,
pi_mix and the best global lambda, interior reach, cost in ms per epoch; and the targets
below, checked), D/table.md and D/curves.png (mean exploitability of pi_avg and pi_mix
against training seconds).

Targets: best_response arms, every seed: exploitability_mixed at least 5% below
min(exploitability, exploitability_current) at every evaluation after warm-up; at the end
below the best global lambda by more than the seed spread (max - min over seeds of the
final exploitability_mixed); scheduler.interior_reach >= 0.2; pi_avg within the off arm's
seed range widened by its spread. br_critic: exploitability_mixed <= exploitability at the
end, every seed.
"""

import dataclasses
import json
import os
import sys

import numpy as np
import torch
from absl import app, flags

from armac_spiel import run_io, trainer
from armac_spiel.atomic import atomic_write_text
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler_glue import scheduler_factory
from experiments.train import build_spec

# --out_dir, --game_name, --config, --eval_every, --device, --threads: experiments.train's.
FLAGS = flags.FLAGS
flags.DEFINE_float("seconds", 600.0, "Training seconds per run (evaluation excluded).")
flags.DEFINE_integer("seeds", 3, "Seeds per arm.")
flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_list("arms", ["off", "br_discrete", "br_continuous", "br_critic"], "Arms to run.")
FLAGS.set_default("game_name", "leduc_poker")
FLAGS.set_default("config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "configs", "leduc_scheduler_discrete.yaml"))

ARMS = {"off": ("off", None), "br_discrete": ("discrete", "best_response"),
        "br_continuous": ("continuous", "best_response"),
        "br_critic": ("discrete", "br_critic")}
COLUMNS = (("pi_avg", "exploitability"), ("pi_rm", "exploitability_current"),
           ("pi_mix", "exploitability_mixed"),
           ("best global lambda", "exploitability_best_global_lambda"),
           ("interior reach", "scheduler.interior_reach"),
           ("cost ms/epoch", "scheduler.cost_ms_per_epoch"))


def arm_suite(arm: str, suite: SchedulerSuiteConfig | None):
  """(mode, suite) of an arm; errors name the flag."""
  if arm not in ARMS:
    raise ValueError(f"--arms: unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
  mode, strategy = ARMS[arm]
  if mode == "off":
    return mode, None
  suite = (suite or SchedulerSuiteConfig()).with_mode(mode)
  uc = dataclasses.replace(suite.utility_computation, strategy=strategy, utility_type="")
  return mode, dataclasses.replace(suite, utility_computation=uc)


def run_one(arm, seed, out_dir, game, config, seconds, eval_every, device) -> list[dict]:
  """One training run; returns its metrics lines (resumes a run left unfinished)."""
  if os.path.exists(os.path.join(out_dir, "DONE")):
    return run_io.read_metrics(os.path.join(out_dir, "metrics.jsonl"))
  mode, _ = ARMS[arm]
  overrides = {"scheduler_mode": mode}
  if eval_every is not None:
    overrides["eval_every"] = eval_every
  resume = os.path.exists(os.path.join(out_dir, trainer.CHECKPOINT))
  spec, suite = build_spec(game, seed, out_dir, seconds, config, overrides, device, resume)
  mode, suite = arm_suite(arm, suite)
  spec.plot = False
  spec.extra_config["bench_arm"] = arm
  return trainer.train(spec, make_scheduler=scheduler_factory(suite, mode))


def _final(rows, key):
  vals = [r.get(key) for r in rows if r.get(key) is not None]
  return vals[-1] if vals else None


def targets(runs: dict, warmup: int) -> dict:
  """The targets of the module docstring, per arm and seed (True / False / None = n/a)."""
  out = {}
  off = [_final(r, "exploitability") for r in runs.get("off", {}).values()]
  off = [v for v in off if v is not None]
  for arm, by_seed in runs.items():
    if arm == "off":
      continue
    mixed = [_final(r, "exploitability_mixed") for r in by_seed.values()]
    spread = (max(mixed) - min(mixed)) if mixed and None not in mixed else None
    res = {}
    for seed, rows in by_seed.items():
      last = rows[-1]
      t = {}
      if ARMS[arm][1] == "best_response":
        after = [r for r in rows if r["epoch"] > warmup and "exploitability_mixed" in r]
        t["mixed_5pct_below_both_every_eval"] = bool(after) and all(
            r["exploitability_mixed"] <= 0.95 * min(r["exploitability"],
                                                   r["exploitability_current"])
            for r in after)
        t["mixed_below_global_by_spread"] = (
            None if spread is None else
            last["exploitability_best_global_lambda"] - last["exploitability_mixed"] > spread)
        t["interior_reach_ge_0.2"] = last.get("scheduler.interior_reach", 0.0) >= 0.2
        if off:
          lo, hi = min(off), max(off)
          w = hi - lo
          t["avg_within_off_noise"] = lo - w <= last["exploitability"] <= hi + w
      else:
        t["mixed_le_avg_at_end"] = last["exploitability_mixed"] <= last["exploitability"]
      res[seed] = t
    out[arm] = {"seed_spread_mixed": spread, "per_seed": res}
  return out


def summarise(runs: dict) -> dict:
  out = {}
  for arm, by_seed in runs.items():
    out[arm] = {}
    for _, key in COLUMNS + (("epochs", "epoch"), ("train_s", "train_s")):
      per = {s: _final(rows, key) for s, rows in by_seed.items()}
      vals = [v for v in per.values() if v is not None]
      out[arm][key] = {"per_seed": per, "mean": float(np.mean(vals)) if vals else None}
  return out


def table(results: dict, seconds: float, game: str, seeds: list) -> str:
  def f(x):
    return "n/a" if x is None else f"{x:.4f}"
  head = " | ".join(name for name, _ in COLUMNS)
  lines = [f"Game {game}, {seconds:g} s training per run, seeds {seeds}; mean (per seed).",
           "", f"| arm | epochs | {head} |", "|---" * (len(COLUMNS) + 2) + "|"]
  for arm, r in results.items():
    cells = []
    for _, key in COLUMNS:
      per = ", ".join(f(r[key]["per_seed"][s]) for s in seeds)
      cells.append(f"{f(r[key]['mean'])} ({per})")
    ep = r["epoch"]["mean"]
    lines.append(f"| {arm} | {0 if ep is None else ep:.0f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(runs: dict, path: str, game: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for arm, by_seed in runs.items():
    for key, style in (("exploitability", "-"), ("exploitability_mixed", "--")):
      curves = [(np.array([r["train_s"] for r in rows if key in r]),
                 np.array([r[key] for r in rows if key in r])) for rows in by_seed.values()]
      curves = [c for c in curves if len(c[0])]
      if not curves:
        continue
      grid = np.unique(np.concatenate([t for t, _ in curves]))
      grid = grid[grid > 0]
      ys = [y[np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(y) - 1)]
            for t, y in curves]
      if len(grid):
        ax.plot(grid, np.mean(ys, axis=0), style,
                label=f"{arm} {'pi_avg' if key == 'exploitability' else 'pi_mix'}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("training seconds")
  ax.set_ylabel("exploitability")
  ax.set_title(f"ARMAC scheduler arms, {game}")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  torch.set_num_threads(FLAGS.threads)
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
  try:
    for arm in FLAGS.arms:
      arm_suite(arm, None)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = {}
    for arm in FLAGS.arms:
      runs[arm] = {}
      for seed in seeds:
        d = os.path.join(FLAGS.out_dir, arm, f"seed{seed}")
        runs[arm][seed] = run_one(arm, seed, d, FLAGS.game_name, FLAGS.config, FLAGS.seconds,
                                  FLAGS.eval_every, FLAGS.device)
        last = runs[arm][seed][-1]
        print(f"{arm} seed {seed}: avg {last.get('exploitability')} mixed "
              f"{last.get('exploitability_mixed')}", flush=True)
    _, suite = build_spec(FLAGS.game_name, seeds[0], FLAGS.out_dir, None, FLAGS.config)
    warmup = (suite or SchedulerSuiteConfig()).scheduler.scheduler_warmup_iters
  except ValueError as e:  # ConfigError, GameError and bad --arms
    print(f"error: {e}", file=sys.stderr)
    return 2
  results = summarise(runs)
  meta = {"game": FLAGS.game_name, "seconds": FLAGS.seconds, "seeds": seeds,
          "config": FLAGS.config, "device": trainer.resolve_device(FLAGS.device),
          "provenance": run_io.provenance()}
  run_io.write_json_atomic(os.path.join(FLAGS.out_dir, "results.json"),
                           {"meta": meta, "arms": results, "targets": targets(runs, warmup)})
  plot(runs, os.path.join(FLAGS.out_dir, "curves.png"), FLAGS.game_name)
  md = table(results, FLAGS.seconds, FLAGS.game_name, seeds)
  atomic_write_text(os.path.join(FLAGS.out_dir, "table.md"), md)
  print(md)
  print(json.dumps(targets(runs, warmup), indent=1))
  return 0


if __name__ == "__main__":
  app.run(main)
