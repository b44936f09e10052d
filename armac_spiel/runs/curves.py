"""Curves of a grid of runs: step values, values at given times, bootstrap bands, tables.

A run's curve is the step function of its metrics lines: the value at x is that of the last
evaluation at or before x (x = training seconds or episodes). Across seeds, curves are
read on a common log-spaced grid covering only the x range every seed reached, and the
band is a 95% percentile bootstrap over seeds.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Iterable, Optional

import numpy as np

from armac_spiel.runs import rundir

KEY = "exploitability"


def load_runs(root: str, key: str = KEY) -> dict:
  """{game: {algo: {seed: [metrics lines with `key`]}}} of a sweep directory
  (root/<game>/<algo>/seed_<s>/metrics.jsonl, the layout of armac_spiel.runs.sweep)."""
  runs: dict = {}
  for path in sorted(glob.glob(os.path.join(root, "*", "*", "seed_*", rundir.METRICS))):
    d = os.path.dirname(path)
    algo, seed = os.path.basename(os.path.dirname(d)), int(os.path.basename(d)[5:])
    game = os.path.basename(os.path.dirname(os.path.dirname(d)))
    cfg_path = os.path.join(d, rundir.CONFIG)
    if os.path.exists(cfg_path):
      with open(cfg_path, encoding="utf-8") as f:
        game = json.load(f).get("game", game)
    rows = [r for r in rundir.read_metrics(path) if r.get(key) is not None]
    if rows:
      runs.setdefault(game, {}).setdefault(algo, {})[seed] = rows
  return runs


def step_values(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """y of the last point with x <= g for each g (NaN before the first point); xs sorted."""
  idx = np.searchsorted(xs, grid, side="right") - 1
  return np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)


def series(rows: list[dict], x: str, key: str = KEY) -> tuple[np.ndarray, np.ndarray]:
  """(xs, ys) of one run, sorted by x."""
  pts = sorted((float(r[x]), float(r[key])) for r in rows
               if r.get(x) is not None and r.get(key) is not None)
  return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def values_at(rows: list[dict], ts: Iterable[float], x: str = "train_s",
              key: str = KEY) -> list[Optional[float]]:
  """The value of the last evaluation at or before each t (None before the first)."""
  ts = np.asarray(list(ts), dtype=float)
  xs, ys = series(rows, x, key)
  vals = step_values(xs, ys, ts) if len(xs) else np.full(len(ts), np.nan)
  return [None if np.isnan(v) else float(v) for v in vals]


def against_reference(rows: list[dict], ref_rows: list[dict] | None, key: str = KEY,
                      step: str = "epoch", tol: float = 1e-12) -> dict:
  """A run's metrics against a reference run of the same seed: `equal_at_shared_steps`
  (|key| within tol at every step both evaluated) and `steps_ratio` (last step over the
  reference's). {} without a reference."""
  if not ref_rows:
    return {}
  ref = {r[step]: r[key] for r in ref_rows if key in r}
  shared = [r for r in rows if r[step] in ref and key in r]
  return {"equal_at_shared_steps": bool(shared) and all(
              abs(r[key] - ref[r[step]]) <= tol for r in shared),
          "steps_ratio": rows[-1][step] / max(ref_rows[-1][step], 1)}


def curves_on_grid(seed_rows: dict, x: str, n: int,
                   key: str = KEY) -> tuple[np.ndarray, np.ndarray]:
  """(grid, values[seed, grid]) over the x range every seed covers (x > 0, log-spaced)."""
  all_series = [series(rows, x, key) for rows in seed_rows.values()]
  pos = [xs[xs > 0] for xs, _ in all_series]
  if not all_series or any(len(p) == 0 for p in pos):
    return np.zeros(0), np.zeros((len(all_series), 0))
  lo, hi = max(p[0] for p in pos), min(xs[-1] for xs, _ in all_series)
  if hi < lo:
    return np.zeros(0), np.zeros((len(all_series), 0))
  grid = np.geomspace(lo, hi, n) if hi > lo else np.array([lo])
  return grid, np.stack([step_values(xs, ys, grid) for xs, ys in all_series])


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0):
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


def _fmt(mean: float, lo: float, hi: float) -> str:
  return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]"


def table(runs: dict, checkpoints: list[float], n_boot: int = 2000, x: str = "train_s",
          unit: str = "s", order=None, labels: Optional[dict] = None) -> str:
  """Markdown: per game x algo, mean [95% CI] of `KEY` at each checkpoint of `x` that some
  algorithm's every seed reached, and at the end of the runs."""
  labels = labels or {}
  what = ("training time (evaluation excluded)" if x == "train_s" else
          "episode count" if x == "episodes" else x)
  lines = [f"# Exploitability at fixed {what}", "",
           "Mean over seeds [95% bootstrap CI] of the average policy's exploitability at the "
           f"last evaluation at or before each {what}; `-` where some seed did not reach "
           "it. `final`: the last evaluation of each run.", ""]
  for game in sorted(runs):
    per_algo = runs[game]
    reached = [t for t in checkpoints
               if any(min(rows[-1][x] for rows in s.values()) >= t for s in per_algo.values())]
    head = (["algo", "seeds"] + [f"{t:g} {unit}" for t in reached] +
            ["final", "final episodes", "final train s"])
    lines += [f"## {game}", "", "| " + " | ".join(head) + " |",
              "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for algo in sorted(per_algo, key=order or (lambda a: a)):
      seeds = per_algo[algo]
      cells = [labels.get(algo, algo), str(len(seeds))]
      for t in reached:
        if min(rows[-1][x] for rows in seeds.values()) < t:
          cells.append("-")
          continue
        v = np.array([[values_at(rows, [t], x)[0]] for rows in seeds.values()], dtype=float)
        cells.append("n/a" if np.isnan(v).any() else
                     _fmt(*(float(a[0]) for a in bootstrap_mean(v, n_boot))))
      final = np.array([[rows[-1][KEY]] for rows in seeds.values()])
      cells.append(_fmt(*(float(a[0]) for a in bootstrap_mean(final, n_boot))))
      cells.append(f"{np.mean([rows[-1]['episodes'] for rows in seeds.values()]):.3g}")
      cells.append(f"{np.mean([rows[-1]['train_s'] for rows in seeds.values()]):.3g}")
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)
