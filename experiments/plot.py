"""Sweep plots: exploitability vs episodes and vs training seconds, mean over seeds with a
95% bootstrap band, and a Markdown table at fixed time checkpoints.

  python -m experiments.plot runs/sweep [--checkpoints_s=10,30,60,120,300,600] \
      [--grid_points=60] [--n_boot=2000]

Reads OUT/<game>/<algo>/seed_<s>/metrics.jsonl (the layout of experiments.sweep) and writes
OUT/curves_episodes.png, OUT/curves_seconds.png and OUT/table.md. Each seed's curve is read
as a step function (the last evaluation at or before x) on a log-spaced grid covering only
the x range that every seed reached; the band resamples seeds with replacement.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import matplotlib
import numpy as np
from absl import app, flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from armac_spiel import run_io, sweep  # noqa: E402
from armac_spiel.atomic import atomic_write_text  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("checkpoints_s", ["10", "30", "60", "120", "300", "600"],
                  "Training seconds at which table.md reports exploitability.")
flags.DEFINE_integer("grid_points", 60, "Points of the common log-spaced grid.")
flags.DEFINE_integer("n_boot", 2000, "Bootstrap resamples of the seeds.")

X_AXES = (("episodes", "episodes", "curves_episodes.png"),
          ("train_s", "training seconds (evaluation excluded)", "curves_seconds.png"))
ALGO_ORDER = {a: i for i, a in enumerate(sweep.ALGOS)}
LABELS = {"armac": "ARMAC", "armac_sched_discrete": "ARMAC + scheduler (discrete)",
          "armac_sched_continuous": "ARMAC + scheduler (continuous)", "deep_cfr": "Deep CFR",
          "nfsp": "NFSP", "cfr_plus": "CFR+", "es_mccfr": "ES-MCCFR"}
STYLES = {"armac": ("tab:blue", "-"), "armac_sched_discrete": ("tab:orange", "-"),
          "armac_sched_continuous": ("tab:green", "-"), "deep_cfr": ("tab:red", "--"),
          "nfsp": ("tab:purple", "--"), "cfr_plus": ("black", "-."),
          "es_mccfr": ("tab:brown", "-.")}


def load_runs(root: str) -> dict:
  """{game: {algo: {seed: [metrics rows with exploitability]}}} from a sweep directory."""
  runs: dict = {}
  for path in sorted(glob.glob(os.path.join(root, "*", "*", "seed_*", "metrics.jsonl"))):
    d = os.path.dirname(path)
    algo, seed = os.path.basename(os.path.dirname(d)), int(os.path.basename(d)[5:])
    game = os.path.basename(os.path.dirname(os.path.dirname(d)))
    cfg_path = os.path.join(d, "config.json")
    if os.path.exists(cfg_path):
      with open(cfg_path, encoding="utf-8") as f:
        game = json.load(f).get("game", game)
    rows = [r for r in run_io.read_metrics(path) if r.get("exploitability") is not None]
    if rows:
      runs.setdefault(game, {}).setdefault(algo, {})[seed] = rows
  return runs


def step_values(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """y of the last point with x <= g for each g (NaN before the first point)."""
  idx = np.searchsorted(xs, grid, side="right") - 1
  out = np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)
  return out


def curves_on_grid(seed_rows: dict, key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
  """(grid, values[seed, grid]) over the x range every seed covers (x > 0, log-spaced)."""
  series = []
  for rows in seed_rows.values():
    pts = sorted((float(r[key]), float(r["exploitability"])) for r in rows
                 if r.get(key) is not None)
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    series.append((xs, ys))
  pos = [xs[xs > 0] for xs, _ in series]
  if any(len(p) == 0 for p in pos):
    return np.zeros(0), np.zeros((len(series), 0))
  lo, hi = max(p[0] for p in pos), min(xs[-1] for xs, _ in series)
  if hi < lo:
    return np.zeros(0), np.zeros((len(series), 0))
  grid = np.geomspace(lo, hi, n) if hi > lo else np.array([lo])
  return grid, np.stack([step_values(xs, ys, grid) for xs, ys in series])


def bootstrap_mean(values: np.ndarray, n_boot: int, seed: int = 0):
  """(mean, lo, hi) over axis 0 (seeds); 95% percentile band of resampled seed means."""
  mean = values.mean(axis=0)
  k = values.shape[0]
  if k < 2:
    return mean, mean, mean
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, k, size=(n_boot, k))
  means = values[idx].mean(axis=1)
  lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
  return mean, lo, hi


def _algos(per_algo: dict) -> list[str]:
  return sorted(per_algo, key=lambda a: (ALGO_ORDER.get(a, 99), a))


def plot_curves(runs: dict, key: str, xlabel: str, path: str, n_grid: int,
                n_boot: int) -> str:
  games = sorted(runs)
  fig, axes = plt.subplots(1, len(games), figsize=(6.2 * len(games), 5.0), squeeze=False)
  handles = {}
  for ax, game in zip(axes[0], games):
    n_seeds = set()
    for algo in _algos(runs[game]):
      seeds = runs[game][algo]
      grid, vals = curves_on_grid(seeds, key, n_grid)
      if grid.size == 0:
        continue
      n_seeds.add(len(seeds))
      mean, lo, hi = bootstrap_mean(vals, n_boot)
      color, ls = STYLES.get(algo, (None, "-"))
      line, = ax.plot(grid, mean, ls, color=color, lw=1.8, label=LABELS.get(algo, algo),
                      drawstyle="steps-post")
      ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, lw=0, step="post")
      handles.setdefault(line.get_label(), line)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exploitability of the average policy")
    seeds_txt = "/".join(str(n) for n in sorted(n_seeds))
    ax.set_title(f"{game}  ({seeds_txt} seeds)" if n_seeds else game)
    ax.grid(True, which="major", alpha=0.45)
    ax.grid(True, which="minor", alpha=0.12)
  if handles:
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), 4), fontsize=9, frameon=False)
  rows = -(-len(handles) // 4) if handles else 0
  fig.suptitle(f"Exploitability vs {xlabel.split(' (')[0]}: mean over seeds, "
               "95% bootstrap band", fontsize=12)
  fig.tight_layout(rect=(0, 0.045 * rows + 0.01, 1, 1))
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def _fmt(mean: float, lo: float, hi: float) -> str:
  return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]"


def table(runs: dict, checkpoints_s: list[float], n_boot: int) -> str:
  """Markdown: per game x algo, mean [95% CI] exploitability at each reached checkpoint and
  at the end of the runs, with seeds and mean final episodes."""
  lines = ["# Exploitability at fixed training times",
           "",
           "Mean over seeds [95% bootstrap CI] of the average policy's exploitability at the "
           "last evaluation at or before each training time (evaluation excluded); `-` where "
           "some seed did not reach it. `final`: the last evaluation of each run.",
           ""]
  for game in sorted(runs):
    per_algo = runs[game]
    reached = [t for t in checkpoints_s
               if any(min(rows[-1]["train_s"] for rows in s.values()) >= t
                      for s in per_algo.values())]
    head = ["algo", "seeds"] + [f"{t:g} s" for t in reached] + ["final", "final episodes",
                                                                  "final train s"]
    lines += [f"## {game}", "", "| " + " | ".join(head) + " |",
              "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for algo in _algos(per_algo):
      seeds = per_algo[algo]
      cells = [LABELS.get(algo, algo), str(len(seeds))]
      for t in reached:
        if min(rows[-1]["train_s"] for rows in seeds.values()) < t:
          cells.append("-")
          continue
        v = []
        for rows in seeds.values():
          xs = np.array([r["train_s"] for r in rows])
          ys = np.array([r["exploitability"] for r in rows])
          v.append(step_values(xs, ys, np.array([float(t)]))[0])
        cells.append(_fmt(*(float(a[0]) for a in bootstrap_mean(np.array(v)[:, None],
                                                                n_boot))))
      final = np.array([[rows[-1]["exploitability"]] for rows in seeds.values()])
      cells.append(_fmt(*(float(a[0]) for a in bootstrap_mean(final, n_boot))))
      cells.append(f"{np.mean([rows[-1]['episodes'] for rows in seeds.values()]):.3g}")
      cells.append(f"{np.mean([rows[-1]['train_s'] for rows in seeds.values()]):.3g}")
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def make_all(root: str, checkpoints_s=(10, 30, 60, 120, 300, 600), n_grid: int = 60,
             n_boot: int = 2000) -> list[str]:
  """Writes the two curve PNGs and table.md into `root`; returns their paths."""
  runs = load_runs(root)
  if not runs:
    raise ValueError(f"{root}: no <game>/<algo>/seed_<s>/metrics.jsonl with exploitability")
  out = [plot_curves(runs, key, label, os.path.join(root, name), n_grid, n_boot)
         for key, label, name in X_AXES]
  path = os.path.join(root, "table.md")
  atomic_write_text(path, table(runs, [float(t) for t in checkpoints_s], n_boot))
  return out + [path]


def main(argv):
  if len(argv) != 2:
    print("usage: python -m experiments.plot SWEEP_DIR [--checkpoints_s=...]",
          file=sys.stderr)
    return 2
  try:
    paths = make_all(argv[1], [float(t) for t in FLAGS.checkpoints_s], FLAGS.grid_points,
                     FLAGS.n_boot)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for p in paths:
    print(p)
  return 0


if __name__ == "__main__":
  app.run(main)
