"""The scheduler's arms at an equal training-time budget (scheduler cost counted in it).

  python -m experiments.bench_scheduler --out_dir=D [--seconds=600] [--seeds=3] \
      [--first_seed=0] [--arms=off,br_discrete,br_continuous,br_critic] [--parallel=2] \
      [--game_name=leduc_poker] [--config=experiments/configs/leduc_scheduler_discrete.yaml]

A preset over the sweep (armac_spiel.runs.sweep). Arms (the ARMAC keys and scheduler
sections of --config, switched per arm; each arm's YAML is written to D/configs/<arm>.yaml):
  off            no scheduler (algorithm armac);
  br_discrete    utility_computation.strategy best_response, discrete network;
  br_continuous  best_response, continuous network;
  br_critic      the model-free best-response critic, discrete network, one update per
                 BR_CRITIC_UPDATE_EVERY epochs.
Each (arm, seed) trains for --seconds (evaluation excluded; the scheduler's update runs
inside the epoch, so its cost is training time) into D/<game>/<arm>/seed_<s>/; finished
runs are skipped and unfinished ones resumed. Writes D/results.json (per arm and seed: the
last evaluation's exploitability of pi_avg, pi_rm, pi_mix and the best global lambda,
interior reach, cost in ms per epoch; and the targets below, checked), D/table.md and
D/curves.png (mean exploitability of pi_avg and pi_mix against training seconds; for
br_critic also the average lambda's pi_mix, the candidate its deployment rejects or takes).

Targets: best_response arms, every seed: exploitability_mixed at least 5% below
min(exploitability, exploitability_current) at every evaluation after warm-up; at the end
below the best global lambda by more than the seed spread (max - min over seeds of the
final exploitability_mixed); scheduler.interior_reach >= 0.2; pi_avg within the off arm's
seed range widened by its spread. br_critic: exploitability_mixed <= exploitability at the
end (to EQUAL_TOL), every seed. Also per run: avg_equals_off_at_equal_epochs (pi_avg equals the off arm's
at every epoch both evaluated) and epochs_vs_off (its epochs over the off arm's).
"""

import json
import os

import numpy as np
import yaml
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import curves, rundir, sweep
from armac_spiel.runs.spec import split_config
from armac_spiel.scheduler.config import SchedulerSuiteConfig

FLAGS = flags.FLAGS
# Exploitabilities this close are equal: the actor alone deployed as pi_mix is pi_avg's
# float32 probabilities renormalised in float64 (2.4e-10 and 1.1e-8 apart at the end of two
# 600 s Leduc runs); 1e-6, float32's resolution of a probability, as the replay tolerance.
EQUAL_TOL = 1e-6
flags.DEFINE_string("out_dir", None, "Output directory.")
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_string("config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "configs", "leduc_scheduler_discrete.yaml"),
                    "ARMAC + scheduler YAML that every arm derives from.")
flags.DEFINE_float("seconds", 600.0, "Training seconds per run (evaluation excluded).")
flags.DEFINE_integer("seeds", 3, "Seeds per arm.")
flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_list("arms", ["off", "br_discrete", "br_continuous", "br_critic"], "Arms to run.")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")
flags.DEFINE_string("ray_address", "local", "local | none | auto | HOST:PORT.")

# arm -> (algorithm name of the sweep, utility_computation.strategy or None)
ARMS = {"off": ("armac", None), "br_discrete": ("armac_sched_discrete", "best_response"),
        "br_continuous": ("armac_sched_continuous", "best_response"),
        "br_critic": ("armac_sched_discrete", "br_critic")}
# br_critic's sampled update (three critics trained on br_episodes episodes each, four
# sampled measures) takes about 0.4 s on Leduc, about half an ARMAC epoch: its arm updates
# once per this many epochs whatever the base YAML's scheduler.update_every (the exact
# arms' update, every epoch, takes about 60 ms).
BR_CRITIC_UPDATE_EVERY = 5
COLUMNS = (("pi_avg", "exploitability"), ("pi_rm", "exploitability_current"),
           ("pi_mix", "exploitability_mixed"),
           ("best global lambda", "exploitability_best_global_lambda"),
           ("interior reach", "scheduler.interior_reach"),
           ("cost ms/epoch", "scheduler.cost_ms_per_epoch"))


def arm_config(arm: str, base_path: str, out_dir: str) -> str:
  """Writes the arm's YAML (the base with the arm's strategy) and returns its path."""
  if arm not in ARMS:
    raise config_lib.ConfigError(f"--arms: unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
  raw = config_lib.load_yaml(base_path)
  strategy = ARMS[arm][1]
  if strategy is None:  # the YAML's scheduler sections would otherwise turn it on
    raw["use_scheduler"] = False
  else:
    uc = dict(raw.get("utility_computation") or {})
    uc.pop("utility_type", None)
    uc["strategy"] = strategy
    raw["utility_computation"] = uc
    if strategy == "br_critic":
      raw["scheduler"] = {**(raw.get("scheduler") or {}), "update_every": BR_CRITIC_UPDATE_EVERY}
  path = os.path.join(out_dir, "configs", f"{arm}.yaml")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_write_text(path, f"# {arm}: derived from {base_path}\n" +
                    yaml.safe_dump(raw, sort_keys=False))
  return path


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
            None if spread is None or "exploitability_best_global_lambda" not in last else
            last["exploitability_best_global_lambda"] - last["exploitability_mixed"] > spread)
        t["interior_reach_ge_0.2"] = last.get("scheduler.interior_reach", 0.0) >= 0.2
        if off:
          lo, hi = min(off), max(off)
          w = hi - lo
          t["avg_within_off_noise"] = lo - w <= last["exploitability"] <= hi + w
        ref = curves.against_reference(rows, runs.get("off", {}).get(seed))
        if ref:  # pi_avg equals the off arm's at equal epochs; its epochs over the off arm's
          t["avg_equals_off_at_equal_epochs"] = ref["equal_at_shared_steps"]
          t["epochs_vs_off"] = ref["steps_ratio"]
      else:
        # A deployed actor alone is pi_avg renormalised in float64: equal up to ~1e-10.
        t["mixed_le_avg_at_end"] = (last["exploitability_mixed"]
                                    <= last["exploitability"] + EQUAL_TOL)
        t["mixed_minus_avg_at_end"] = last["exploitability_mixed"] - last["exploitability"]
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
      per = ", ".join(f(r[key]["per_seed"].get(s)) for s in seeds)
      cells.append(f"{f(r[key]['mean'])} ({per})")
    ep = r["epoch"]["mean"]
    lines.append(f"| {arm} | {0 if ep is None else ep:.0f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(runs: dict, path: str, game: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker
  fig, ax = plt.subplots(figsize=(6, 4))
  labels = {"exploitability": "pi_avg", "exploitability_mixed": "pi_mix",
            "exploitability_mixed_average": "pi_mix of the average lambda (not deployed)"}
  for arm, by_seed in runs.items():
    keys = [("exploitability", "-"), ("exploitability_mixed", "--")]
    if ARMS.get(arm, (None, None))[1] == "br_critic":  # the candidate its gate weighs
      keys.append(("exploitability_mixed_average", ":"))
    for key, style in keys:
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
        ax.plot(grid, np.mean(ys, axis=0), style, label=f"{arm} {labels[key]}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
  ax.set_xlabel("training seconds")
  ax.set_ylabel("exploitability")
  ax.set_title(f"ARMAC scheduler arms, {game}")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  if not FLAGS.out_dir:
    raise app.UsageError("--out_dir is required")
  root = os.path.abspath(FLAGS.out_dir)
  seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
  configs = {arm: arm_config(arm, FLAGS.config, root) for arm in FLAGS.arms}
  dirs = {(arm, s): sweep.run_dir(root, FLAGS.game_name, arm, s)
          for arm in FLAGS.arms for s in seeds}
  tasks = [sweep.RunTask(FLAGS.game_name, ARMS[arm][0], s, dirs[arm, s],
                         time_budget_s=FLAGS.seconds, armac_config=configs[arm], plot=False)
           for s in seeds for arm in FLAGS.arms]
  summaries = sweep.run_preset(
      tasks, root, "bench_scheduler",
      {"arms": FLAGS.arms, "config": FLAGS.config, "seconds": FLAGS.seconds, "seeds": seeds},
      ray_address=FLAGS.ray_address, num_cpus=FLAGS.parallel)
  runs = {arm: {s: rundir.read_metrics(os.path.join(dirs[arm, s], rundir.METRICS))
                for s in seeds} for arm in FLAGS.arms}
  runs = {arm: {s: rows for s, rows in by.items() if rows} for arm, by in runs.items()}
  suite = split_config(config_lib.load_yaml(FLAGS.config), FLAGS.config)[1]
  warmup = (suite or SchedulerSuiteConfig()).scheduler.scheduler_warmup_iters
  results = summarise(runs)
  checked = targets(runs, warmup)
  rundir.write_json_atomic(os.path.join(root, "results.json"),
                           {"meta": {"game": FLAGS.game_name, "seconds": FLAGS.seconds,
                                     "seeds": seeds, "config": FLAGS.config},
                            "arms": results, "targets": checked})
  plot(runs, os.path.join(root, "curves.png"), FLAGS.game_name)
  md = table(results, FLAGS.seconds, FLAGS.game_name, seeds)
  atomic_write_text(os.path.join(root, "table.md"), md)
  print(md)
  print(json.dumps(checked, indent=1))
  return 1 if any(s["status"] == "failed" for s in summaries) else 0


if __name__ == "__main__":
  app.run(main)
