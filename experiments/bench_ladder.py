"""The ladder benchmark: ARMAC's defaults, its general path and its scheduler against
OpenSpiel's MCCFR on every rung of games.ladder.LADDER, at equal training time.

  python -m experiments.bench_ladder --out_dir=D [--rungs=kuhn,leduc,...] \
      [--methods=armac,armac_boot_pyspiel,armac_sched,os_mccfr,es_mccfr] [--seeds=3] \
      [--seconds=600] [--checkpoints=60,300,600] [--eval_every_s=10] [--parallel=2] \
      [--ray_address=local|none|auto|HOST:PORT] [--out=D/bench_ladder.json] \
      [--figure=D/bench_ladder.png]
  python -m experiments.bench_ladder --plot_only --out=F.json [--figure=F.png]

A preset over the sweep (armac_spiel.runs.sweep): each (rung, method, seed) trains for
`--seconds` (evaluation excluded) into D/<rung>/<method>/seed_<s>/, `--parallel` runs at a
time on a local Ray (`--ray_address=none`: inline, one run at a time, each in its own
process). Finished runs (DONE) are skipped and unfinished ones resumed, so a stopped
benchmark continues where it stopped. Every run is what `python -m experiments.train` does
with `--algo` below and `--config=--armac_config`: by default `derived`, the config
derived from the game (armac_spiel.config.derive_config) on every rung, the tuned Kuhn and
Leduc YAMLs left out (`--armac_config=` empty: the YAML where one exists; the JSON names
each run's config file).

Methods (METHODS): armac (`--algo=armac`), armac_boot_pyspiel (the general bootstrap path on
the pyspiel sampler), armac_sched (`--algo=armac_sched_discrete`, i.e. `--scheduler=discrete`:
its value is the deployed mix's `exploitability_mixed`), os_mccfr and es_mccfr (OpenSpiel's
C++ MCCFR).

Values are read at `--checkpoints` training seconds, scaled by `--seconds` / max(checkpoints)
when the budget is shorter. Every run evaluates at least every `--eval_every_s` training
seconds (default `--seconds` / EVALS; ARMAC also every `eval_every` epochs of its config),
and the value at t is that of the first evaluation at or after t: the policy after t
seconds of training, read at most one cadence and one step late (at the budget: the run's
final evaluation). The JSON records when each value was read, the table the latest.

Writes `--out` (JSON: per rung its game, sizes, the uniform policy's exploitability, per
method the per-seed values and their mean, the ratio of the mean to OS-MCCFR's; the
command, date and git commit), the table beside it (`.md`) and `--figure` (left: the value
at the last checkpoint per rung and method, mean with a 95% bootstrap band over seeds, log
scale; right: the ratio to OS-MCCFR against the game's histories). `--plot_only` redraws
the table and the figure from `--out`.

Exit status: 0 when every run is done, 1 when some failed (the JSON names them), 2 for bad
flags.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import shlex
import sys
from typing import Optional

import numpy as np
import pyspiel
from absl import app, flags

from armac_spiel import evaluation, progress
from armac_spiel.atomic import atomic_write_text
from armac_spiel.params import ConfigError
from armac_spiel.runs import curves, rundir, sweep
from armac_spiel.runs.spec import DERIVED_CONFIG
from experiments import ladder as ladder_sizes
from games import ladder


@dataclasses.dataclass(frozen=True)
class Method:
  """One column of the benchmark: the sweep's algorithm and the metric that is its value."""
  algo: str    # a registered learner or an alias of armac_spiel.runs.spec
  key: str     # the metrics.jsonl field read as its exploitability
  label: str   # for tables and figures


METHODS = {
    "armac": Method("armac", "exploitability", "ARMAC (defaults)"),
    "armac_boot_pyspiel": Method("armac_boot_pyspiel", "exploitability",
                                 "ARMAC bootstrap, pyspiel sampler"),
    "armac_sched": Method("armac_sched_discrete", "exploitability_mixed",
                          "ARMAC + scheduler (deployed mix)"),
    "os_mccfr": Method("os_mccfr", "exploitability", "OS-MCCFR"),
    "es_mccfr": Method("es_mccfr", "exploitability", "ES-MCCFR"),
}
REFERENCE = "os_mccfr"  # the ratios' denominator
EVALS = 60  # evaluations per run by default: every 10 s of a 600 s run
STYLES = {"armac": "tab:blue", "armac_boot_pyspiel": "tab:pink", "armac_sched": "tab:orange",
          "os_mccfr": "tab:olive", "es_mccfr": "tab:brown"}

FLAGS = flags.FLAGS
flags.DEFINE_list("rungs", [r.name for r in ladder.LADDER], "Rungs of games.ladder.LADDER.")
flags.DEFINE_list("methods", list(METHODS), f"Methods, of {list(METHODS)}.")
flags.DEFINE_string("seeds", "3", "A count N (seeds 0..N-1) or a comma list of seeds.")
flags.DEFINE_float("seconds", 600.0, "Training seconds per run (evaluation excluded).")
flags.DEFINE_list("checkpoints", ["60", "300", "600"], "Training seconds at which values are "
                  "read (scaled to --seconds when it is smaller than the largest).")
flags.DEFINE_float("eval_every_s", None, "Training seconds between evaluations of every "
                   "run (default: --seconds / 60).")
flags.DEFINE_string("armac_config", DERIVED_CONFIG, "ARMAC's config on every rung: derived "
                    "(the config derived from the game, the tuned YAMLs left out), a YAML "
                    "file, or empty (the game's YAML where one exists).")
flags.DEFINE_integer("parallel", 2, "Runs at a time (CPUs of the local Ray).")
flags.DEFINE_string("ray_address", "local", "local | none (inline, one run at a time) | "
                    "auto | HOST:PORT.")
flags.DEFINE_string("out_dir", None, "Benchmark directory (run directories, sweep.jsonl).")
flags.DEFINE_string("out", None, "Results JSON (default <out_dir>/bench_ladder.json); the "
                    "markdown table is written beside it (.md).")
flags.DEFINE_string("figure", None, "Figure (default: --out with .png).")
flags.DEFINE_bool("plot_only", False, "Redraw the table and figure from --out; run nothing.")


def checkpoints(values: list[str], seconds: float) -> list[float]:
  """The reading times: `values` when the budget reaches them all, else scaled by
  seconds / max(values) (the same fractions of the budget)."""
  try:
    ts = sorted({float(v) for v in values})
  except ValueError as e:
    raise ConfigError(f"--checkpoints={','.join(values)}: must be numbers of seconds") from e
  if not ts or ts[0] <= 0:
    raise ConfigError(f"--checkpoints={','.join(values)}: must be positive seconds")
  if not (math.isfinite(seconds) and seconds > 0):
    raise ConfigError(f"--seconds={seconds}: must be a positive number of training seconds")
  if ts[-1] > seconds:
    ts = [t * seconds / ts[-1] for t in ts]
  return ts


def select(names: list[str], known: dict, flag: str) -> list[str]:
  bad = [n for n in names if n not in known]
  if bad or not names:
    raise ConfigError(f"{flag}={','.join(names)}: unknown {bad}; allowed: {list(known)}")
  return names


def run_path(root: str, rung: str, method: str, seed: int) -> str:
  return os.path.join(root, rung, method, f"seed_{seed}")


def tasks(root: str, rungs: list[str], methods: list[str], seeds: list[int],
          seconds: float, every_s: float,
          armac_config: Optional[str] = DERIVED_CONFIG) -> dict[tuple, sweep.RunTask]:
  """{(rung, method, seed): its run}, seed-major, so that a stopped benchmark holds every
  (rung, method) at its first seeds. ARMAC's runs take `armac_config` (`derived`: the
  config derived from the game; None: the game's YAML where one exists)."""
  out = {}
  for seed in seeds:
    for name in rungs:
      for m in methods:
        out[name, m, seed] = sweep.RunTask(
            ladder.rung(name).game, METHODS[m].algo, seed, run_path(root, name, m, seed),
            time_budget_s=seconds, eval_every_s=every_s, plot=False,
            armac_config=armac_config if METHODS[m].algo.startswith("armac") else None)
  return out


def value_at(rows: list[dict], t: float, key: str) -> tuple:
  """(value, train_s) of the first evaluation at or after t training seconds with `key`;
  (None, None) when the run has none (yet)."""
  after = [r for r in rows if r["train_s"] >= t and r.get(key) is not None]
  return (after[0][key], after[0]["train_s"]) if after else (None, None)


def _mean(values: list) -> Optional[float]:
  return None if not values or any(v is None for v in values) else float(np.mean(values))


def repo_path(path: Optional[str]) -> Optional[str]:
  """`path` relative to the repository when it lies inside it (a config of
  experiments/configs), else as given."""
  if path is None:
    return None
  rel = os.path.relpath(os.path.abspath(path), sweep.REPO_DIR)
  return path if rel.startswith(os.pardir) else rel


def rung_sizes(name: str) -> dict:
  r = ladder.rung(name)
  game = pyspiel.load_game(r.game)
  sizes = ladder_sizes.walk(game)
  uniform = evaluation.fast_exploitability(r.game, evaluation.uniform_table(r.game))[0]
  return {"game": r.game, "family": r.family, **sizes,
          "actions": game.num_distinct_actions(), "uniform_exploitability": uniform}


def collect(root: str, rungs: list[str], methods: list[str], seeds: list[int],
            ts: list[float], failed: dict) -> dict:
  """The results of every rung from the run directories (see the module docstring)."""
  out = {}
  for name in rungs:
    entry = rung_sizes(name)
    per_method = {}
    for m in methods:
      key = METHODS[m].key
      per_seed = {}
      for s in seeds:
        d = run_path(root, name, m, s)
        rows = rundir.read_metrics(os.path.join(d, rundir.METRICS))
        read = [value_at(rows, t, key) for t in ts]
        cfg_path = os.path.join(d, rundir.CONFIG)
        cfg = rundir.read_json(cfg_path) if os.path.exists(cfg_path) else {}
        last = rows[-1] if rows else {}
        per_seed[str(s)] = {
            "values": {f"{t:g}": v for t, (v, _) in zip(ts, read)},
            "read_at_train_s": {f"{t:g}": at for t, (_, at) in zip(ts, read)},
            "final_train_s": last.get("train_s"), "episodes": last.get("episodes"),
            "steps": last.get("epoch", last.get("step")),
            "done": os.path.exists(os.path.join(d, rundir.DONE)),
            "error": failed.get((name, m, s)), "config_file": repo_path(cfg.get("config_file"))}
      mean = {f"{t:g}": _mean([p["values"][f"{t:g}"] for p in per_seed.values()])
              for t in ts}
      per_method[m] = {"algo": METHODS[m].algo, "value_key": key, "label": METHODS[m].label,
                       "mean": mean, "seeds": per_seed}
    ref = per_method.get(REFERENCE)
    for m, res in per_method.items():
      res["ratio_to_os_mccfr"] = {
          t: (None if ref is None or v is None or not ref["mean"][t] else v / ref["mean"][t])
          for t, v in res["mean"].items()}
    out[name] = {**entry, "methods": per_method}
  return out


def _fmt(x: Optional[float]) -> str:
  return "-" if x is None else f"{x:.3g}"


def ordered(res: dict) -> list[tuple[str, dict, list[str]]]:
  """(rung, its results, its methods) in the ladder's order and METHODS' order (the JSON's
  keys are sorted)."""
  rank = {r.name: i for i, r in enumerate(ladder.LADDER)}
  mrank = {m: i for i, m in enumerate(METHODS)}
  return [(name, res["rungs"][name],
           sorted(res["rungs"][name]["methods"], key=lambda m: (mrank.get(m, 99), m)))
          for name in sorted(res["rungs"], key=lambda n: (rank.get(n, 99), n))]


def latest_read(res: dict) -> float:
  """The most seconds by which a value was read after its checkpoint (0 when none)."""
  return max([p["read_at_train_s"][t] - float(t) for r in res["rungs"].values()
              for mr in r["methods"].values() for p in mr["seeds"].values()
              for t in p["read_at_train_s"] if p["read_at_train_s"][t] is not None],
             default=0.0)


def table(res: dict) -> str:
  """Markdown: per rung and method, the mean (per seed) at each checkpoint and the ratio to
  OS-MCCFR at the last."""
  ts = [f"{t:g}" for t in res["checkpoints_s"]]
  head = (["rung", "histories", "infostates", "uniform", "method"] + [f"{t} s" for t in ts] +
          [f"/ OS-MCCFR at {ts[-1]} s"])
  lines = [f"Exploitability at fixed training seconds (evaluation excluded), {res['seconds']:g} s "
           f"per run, seeds {res['seeds']}: mean (per seed) of the first evaluation at or "
           f"after each time (the latest {latest_read(res):.3g} s after it). The scheduler's "
           "value is its deployed mix. `-`: no evaluation (yet).", "",
           "| " + " | ".join(head) + " |", "|---" * 5 + "|---:" * (len(ts) + 1) + "|"]
  for name, r, methods in ordered(res):
    for i, m in enumerate(methods):
      mr = r["methods"][m]
      cells = [name, str(r["histories"]), str(r["infostates"]),
               _fmt(r["uniform_exploitability"])] if i == 0 else ["", "", "", ""]
      cells.append(mr["label"])
      for t in ts:
        per = ", ".join(_fmt(p["values"][t]) for p in mr["seeds"].values())
        cells.append(f"{_fmt(mr['mean'][t])} ({per})")
      cells.append(_fmt(mr["ratio_to_os_mccfr"][ts[-1]]))
      lines.append("| " + " | ".join(cells) + " |")
  yamls = sorted({(name, p["config_file"]) for name, r, methods in ordered(res)
                  for m in methods for p in r["methods"][m]["seeds"].values()
                  if p["config_file"]})
  if yamls:
    lines += ["", "ARMAC's runs used a YAML on " +
              ", ".join(f"{name} (`{path}`)" for name, path in yamls) +
              "; on the other rungs, the defaults of resolve_spec."]
  failed = [f"{name}/{m}/seed_{s}: {p['error']}" for name, r, methods in ordered(res)
            for m in methods for s, p in r["methods"][m]["seeds"].items() if p["error"]]
  if failed:
    lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failed]
  return "\n".join(lines) + "\n"


def _label(method: str) -> str:
  return METHODS[method].label if method in METHODS else method


def figure(res: dict, path: str) -> str:
  """Left: the value at the last checkpoint per rung and method (mean, 95% bootstrap band
  over seeds; a black tick: the uniform policy); right: the ratio to OS-MCCFR against the
  game's histories."""
  import matplotlib  # optional dependency, imported on the first figure (as runs/plots.py)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  last = f"{res['checkpoints_s'][-1]:g}"
  rungs = [name for name, _, _ in ordered(res)]
  methods = list(dict.fromkeys(m for _, _, ms in ordered(res) for m in ms))
  fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2))
  step = 0.8 / max(len(methods), 1)
  for j, m in enumerate(methods):
    xs, mean, lo, hi = [], [], [], []
    for i, name in enumerate(rungs):
      mr = res["rungs"][name]["methods"].get(m)
      vals = [] if mr is None else [p["values"][last] for p in mr["seeds"].values()]
      if not vals or any(v is None for v in vals):
        continue
      mu, a, b = curves.bootstrap_mean(np.array(vals, dtype=float)[:, None])
      xs.append(i - 0.4 + step * (j + 0.5))
      mean.append(float(mu[0]))
      lo.append(float(mu[0] - a[0]))
      hi.append(float(b[0] - mu[0]))
    left.errorbar(xs, mean, yerr=[lo, hi], fmt="o", ms=6, capsize=3, color=STYLES.get(m),
                  label=_label(m))
  for i, name in enumerate(rungs):
    u = res["rungs"][name]["uniform_exploitability"]
    left.hlines(u, i - 0.45, i + 0.45, colors="k", lw=1.5,
                label="uniform policy" if i == 0 else None)
  left.set_yscale("log")
  left.set_xticks(range(len(rungs)))
  left.set_xticklabels(rungs, rotation=30, ha="right")
  left.set_xlim(-0.5, len(rungs) - 0.5)
  left.set_ylabel(f"exploitability at {last} training seconds")
  left.set_title("mean over seeds, 95% bootstrap band", fontsize=10)
  left.grid(True, axis="y", which="both", alpha=0.3)
  left.legend(fontsize=8)
  for m in methods:
    if m == REFERENCE:  # the line at 1
      continue
    pts = sorted((r["histories"], r["methods"][m]["ratio_to_os_mccfr"][last], name)
                 for name, r in res["rungs"].items()
                 if m in r["methods"] and r["methods"][m]["ratio_to_os_mccfr"][last])
    if pts:
      right.plot([p[0] for p in pts], [p[1] for p in pts], "o", ls="none", color=STYLES.get(m),
                 label=_label(m))
  for name, r in res["rungs"].items():
    right.annotate(name, (r["histories"], 1.0), textcoords="offset points", xytext=(0, 4),
                   fontsize=7, rotation=60)
  right.axhline(1.0, color=STYLES[REFERENCE], lw=1.2, label=f"{_label(REFERENCE)} (= 1)")
  right.set_xscale("log")
  right.set_yscale("log")
  right.set_xlabel("histories of the game (log)")
  right.set_ylabel(f"exploitability / OS-MCCFR's at {last} s")
  right.grid(True, which="both", alpha=0.3)
  right.legend(fontsize=8)
  fig.suptitle(f"The ladder: {res['seconds']:g} s of training per run, seeds {res['seeds']}")
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def redraw(out: str, fig_path: str) -> str:
  """The table (beside `out`, .md) and the figure of the results JSON `out`; the table."""
  res = rundir.read_json(out)
  md = table(res)
  atomic_write_text(os.path.splitext(out)[0] + ".md", md)
  figure(res, fig_path)
  return md


def command_line() -> str:
  return " ".join(["python -m experiments.bench_ladder"] +
                  [shlex.quote(a) for a in sys.argv[1:]])


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if FLAGS.plot_only:
    if not FLAGS.out or not os.path.exists(FLAGS.out):
      print(f"error: --plot_only needs --out=JSON of an earlier benchmark (got {FLAGS.out!r})",
            file=sys.stderr)
      return 2
    print(redraw(FLAGS.out, FLAGS.figure or os.path.splitext(FLAGS.out)[0] + ".png"))
    return 0
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  root = os.path.abspath(FLAGS.out_dir)
  out = FLAGS.out or os.path.join(root, "bench_ladder.json")
  try:
    rungs = select(FLAGS.rungs, {r.name: r for r in ladder.LADDER}, "--rungs")
    methods = select(FLAGS.methods, METHODS, "--methods")
    seeds = sweep.parse_seeds(FLAGS.seeds)
    ts = checkpoints(FLAGS.checkpoints, FLAGS.seconds)
    every_s = FLAGS.seconds / EVALS if FLAGS.eval_every_s is None else FLAGS.eval_every_s
    if not (math.isfinite(every_s) and every_s > 0):
      raise ConfigError(f"--eval_every_s={every_s}: must be a positive number of seconds")
    if FLAGS.parallel < 1:
      raise ConfigError(f"--parallel={FLAGS.parallel}: must be >= 1 run at a time")
    todo = tasks(root, rungs, methods, seeds, FLAGS.seconds, every_s,
                 FLAGS.armac_config or None)
  except ValueError as e:  # ConfigError included
    print(f"error: {e}", file=sys.stderr)
    return 2
  progress.log_to_file(root, "bench_ladder")  # runs' log lines: <out_dir>/bench_ladder.INFO
  summaries = sweep.run_preset(
      list(todo.values()), root, "bench_ladder",
      {"rungs": rungs, "methods": methods, "seeds": seeds, "seconds": FLAGS.seconds,
       "argv": sys.argv}, ray_address=FLAGS.ray_address, num_cpus=FLAGS.parallel,
      isolate=True)
  by_dir = {t.out_dir: key for key, t in todo.items()}
  failed = {by_dir[s["run_dir"]]: s.get("error") for s in summaries
            if s["status"] == "failed"}
  prov = rundir.provenance()
  res = {"command": command_line(),
         "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
         "git_commit": prov["git_commit"], "git_dirty": prov["git_dirty"],
         "seconds": FLAGS.seconds, "seeds": seeds, "checkpoints_s": ts,
         "parallel": FLAGS.parallel, "ray_address": FLAGS.ray_address,
         "eval_every_s": every_s, "reference": REFERENCE,
         "methods": {m: dataclasses.asdict(METHODS[m]) for m in methods},
         "rungs": collect(root, rungs, methods, seeds, ts, failed)}
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  rundir.write_json_atomic(out, res)
  print(redraw(out, FLAGS.figure or os.path.splitext(out)[0] + ".png"))
  for key, err in failed.items():
    print(f"failed: {'/'.join(map(str, key))}: {err}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
