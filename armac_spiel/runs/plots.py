"""Figures: one run's curve, and a sweep's curves (mean over seeds with a bootstrap band).

Exploitability is drawn log-log against episodes and against training seconds. The CFR+
reference (OpenSpiel's C++ CFR+, armac_spiel.evaluation.cfr_plus_curve) is drawn against
its own wall time, and on the episodes panel of a run as a dashed line at its value after
`CFR_PLUS_REF_ITERS` iterations.
"""

from __future__ import annotations

import os

import numpy as np

from armac_spiel.atomic import atomic_write_text
from armac_spiel.evaluation import cfr_plus_curve
from armac_spiel.runs import curves, rundir

X_AXES = (("episodes", "episodes", "curves_episodes.png"),
          ("train_s", "training seconds (evaluation excluded)", "curves_seconds.png"))
LABELS = {"armac": "ARMAC", "armac_sched_discrete": "ARMAC + scheduler (discrete)",
          "armac_sched_continuous": "ARMAC + scheduler (continuous)", "deep_cfr": "Deep CFR",
          "nfsp": "NFSP", "cfr_plus": "CFR+", "es_mccfr": "ES-MCCFR", "os_mccfr": "OS-MCCFR"}
STYLES = {"armac": ("tab:blue", "-"), "armac_sched_discrete": ("tab:orange", "-"),
          "armac_sched_continuous": ("tab:green", "-"), "deep_cfr": ("tab:red", "--"),
          "nfsp": ("tab:purple", "--"), "cfr_plus": ("black", "-."),
          "es_mccfr": ("tab:brown", "-."), "os_mccfr": ("tab:olive", "-."),
          "armac_states": ("tab:blue", "-"), "armac_boot_tree": ("tab:cyan", "-"),
          "armac_boot_pyspiel": ("tab:pink", "-"), "armac_rows_tree": ("tab:gray", ":"),
          "armac_rows_pyspiel": ("tab:gray", "--")}
ORDER = {a: i for i, a in enumerate(STYLES)}


def algo_order(algo: str):
  return (ORDER.get(algo, 99), algo)


def _pyplot():
  """matplotlib.pyplot on the Agg backend. matplotlib is imported on the first figure, as an
  optional dependency: it costs 31 MB resident, and a run that does not plot (--noplot, a
  sweep's runs) never loads it."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _save(fig, path: str) -> str:
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  _pyplot().close(fig)
  os.replace(tmp, path)
  return path


def plot_run(out_dir: str, game_string: str, name: str = "curve.png") -> str | None:
  """curve.png of one run directory: the average policy and, where logged, the current policy
  and the scheduler's deployed mix."""
  rows = [r for r in rundir.read_metrics(os.path.join(out_dir, rundir.METRICS))
          if r.get("exploitability") is not None]
  if not rows:
    return None
  methods = {r.get("exploitability_method", "exact") for r in rows}
  # A game evaluated approximately is too large for the CFR+ reference.
  ref = cfr_plus_curve(game_string) if methods == {"exact"} else None
  fig, axes = _pyplot().subplots(1, 2, figsize=(11, 4.2))
  for ax, key, label in ((axes[0], "episodes", "episodes"),
                         (axes[1], "train_s", "training seconds (evaluation excluded)")):
    pts = [(r[key], r["exploitability"], r.get("exploitability_ci95") or 0.0)
           for r in rows if r[key] > 0]
    cur = [(r[key], r["exploitability_current"]) for r in rows
           if r[key] > 0 and r.get("exploitability_current") is not None]
    if pts and ref is None:
      x, y, ci = zip(*pts)
      ax.errorbar(x, y, yerr=ci, fmt="o-", ms=3, capsize=2,
                  label=f"average policy ({', '.join(sorted(methods))} lower bound, 95% CI)")
    elif pts:
      ax.plot(*zip(*[p[:2] for p in pts]), "o-", ms=3, label="average policy")
    if cur:
      ax.plot(*zip(*cur), "-", color="tab:gray", alpha=0.6,
              label="current (regret-matching) policy")
    mix = [(r[key], r["exploitability_mixed"]) for r in rows
           if r[key] > 0 and r.get("exploitability_mixed") is not None]
    if mix:
      ax.plot(*zip(*mix), "s-", ms=3, color="tab:orange", label="scheduler's deployed mix")
    if ref is None:
      pass
    elif key == "train_s":
      ax.plot([r[0] for r in ref], [r[2] for r in ref], "k--", label="CFR+ (pyspiel C++)")
    else:
      ax.axhline(ref[-1][2], color="k", ls="--",
                 label=f"CFR+ after {ref[-1][1]} iterations")
    _log_axes(ax)
    ax.set_xlabel(label)
    ax.set_ylabel("exploitability (chips)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(f"{game_string}: exploitability")
  fig.tight_layout()
  return _save(fig, os.path.join(out_dir, name))


def _log_axes(ax) -> None:
  """Log-log axes; the x axis is labelled at 1, 2 and 5 times each power of ten (matplotlib's
  minor labels would overlap on spans of one or two decades), at powers of ten only on
  spans of more than three decades."""
  from matplotlib.ticker import (  # pylint: disable=import-outside-toplevel
      FuncFormatter, LogLocator, NullFormatter)  # optional: see _pyplot
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))

  def label(v, _):  # at draw time: past three decades, powers of ten only
    lo, hi = ax.get_xlim()
    power = 10.0 ** np.floor(np.log10(v) + 1e-9)
    if lo > 0 and np.log10(hi / lo) > 3 and abs(v / power - 1.0) > 1e-6:
      return ""
    return f"{v:g}"

  ax.xaxis.set_major_formatter(FuncFormatter(label))
  ax.xaxis.set_minor_formatter(NullFormatter())


def plot_curves(runs: dict, key: str, xlabel: str, path: str, n_grid: int = 60,
                n_boot: int = 2000, reference: bool = False) -> str:
  """One panel per game: each algorithm's mean over seeds with its 95% bootstrap band."""
  games = sorted(runs)
  fig, axes = _pyplot().subplots(1, len(games), figsize=(6.2 * len(games), 5.0), squeeze=False)
  handles = {}
  for ax, game in zip(axes[0], games):
    n_seeds = set()
    for algo in sorted(runs[game], key=algo_order):
      seeds = runs[game][algo]
      grid, vals = curves.curves_on_grid(seeds, key, n_grid)
      if grid.size == 0:
        continue
      n_seeds.add(len(seeds))
      mean, lo, hi = curves.bootstrap_mean(vals, n_boot)
      color, ls = STYLES.get(algo, (None, "-"))
      line, = ax.plot(grid, mean, ls, color=color, lw=1.8, label=LABELS.get(algo, algo),
                      drawstyle="steps-post")
      ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, lw=0, step="post")
      handles.setdefault(line.get_label(), line)
    if reference and key == "train_s":
      ref = cfr_plus_curve(game)
      line, = ax.plot([r[0] for r in ref], [r[2] for r in ref], "k:", lw=1.2,
                      label="CFR+ (pyspiel C++, tabular)")
      handles.setdefault(line.get_label(), line)
    _log_axes(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("exploitability of the average policy")
    seeds_txt = "/".join(str(n) for n in sorted(n_seeds))
    ax.set_title(f"{game}  ({seeds_txt} seeds)" if n_seeds else game)
    ax.grid(True, which="major", alpha=0.45)
    ax.grid(True, which="minor", alpha=0.12)
  per_row = 2 if len(games) == 1 else 4  # a one-panel figure is too narrow for four labels
  if handles:
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), per_row), fontsize=9, frameon=False)
  rows = -(-len(handles) // per_row) if handles else 0
  fig.suptitle(f"Exploitability vs {xlabel.split(' (')[0]}: mean over seeds, "
               "95% bootstrap band", fontsize=12)
  fig.tight_layout(rect=(0, 0.045 * rows + 0.01, 1, 1))
  return _save(fig, path)


def plot_sweep(root: str, checkpoints_s=(10, 30, 60, 120, 300, 600), n_grid: int = 60,
               n_boot: int = 2000, reference: bool = False) -> list[str]:
  """curves_episodes.png, curves_seconds.png and table.md of a sweep directory."""
  runs = curves.load_runs(root)
  if not runs:
    raise ValueError(f"{root}: no <game>/<algo>/seed_<s>/metrics.jsonl with exploitability")
  out = [plot_curves(runs, key, label, os.path.join(root, name), n_grid, n_boot, reference)
         for key, label, name in X_AXES]
  path = os.path.join(root, "table.md")
  atomic_write_text(path, curves.table(runs, [float(t) for t in checkpoints_s], n_boot,
                                       order=algo_order, labels=LABELS))
  return out + [path]
