"""Convergence plots: log-log exploitability against episodes and against seconds.

The CFR+ reference (OpenSpiel's C++ CFR+) is drawn as a curve against its own wall time and
as a dashed line at its value after `CFR_PLUS_REF_ITERS` iterations on the episodes panel.
"""

from __future__ import annotations

import functools
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from armac_spiel import run_io  # noqa: E402

CFR_PLUS_REF_ITERS = 100


@functools.lru_cache(maxsize=8)
def cfr_plus_curve(game_string: str, iterations: int = CFR_PLUS_REF_ITERS):
  """[(seconds, exploitability)] of pyspiel CFR+ at doubling iteration counts."""
  import pyspiel
  from armac_spiel import evaluation
  from games import load_game
  solver = pyspiel.CFRPlusSolver(load_game(game_string).game)
  out, t, it, nxt = [], 0.0, 0, 1
  while it < iterations:
    t0 = time.perf_counter()
    solver.evaluate_and_update_policy()
    t += time.perf_counter() - t0
    it += 1
    if it == nxt or it == iterations:
      probs = evaluation.tabularise(game_string, solver.average_policy())
      out.append((t, it, run_io.fast_exploitability(game_string, probs)[0]))
      nxt *= 2
  return tuple(out)


def plot_run(out_dir: str, game_string: str, name: str = "curve.png") -> str | None:
  rows = [r for r in run_io.read_metrics(os.path.join(out_dir, "metrics.jsonl"))
          if r.get("exploitability") is not None]
  if not rows:
    return None
  ref = cfr_plus_curve(game_string)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, key, label in ((axes[0], "episodes", "episodes"),
                         (axes[1], "train_s", "training seconds (evaluation excluded)")):
    pts = [(r[key], r["exploitability"]) for r in rows if r[key] > 0]
    cur = [(r[key], r["exploitability_current"]) for r in rows if r[key] > 0]
    if pts:
      ax.plot(*zip(*pts), "o-", ms=3, label="ARMAC average policy")
      ax.plot(*zip(*cur), "-", alpha=0.4, label="ARMAC current (regret-matching) policy")
    if key == "train_s":
      ax.plot([r[0] for r in ref], [r[2] for r in ref], "k--", label="CFR+ (pyspiel C++)")
    else:
      ax.axhline(ref[-1][2], color="k", ls="--",
                 label=f"CFR+ after {ref[-1][1]} iterations")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("exploitability (chips)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(f"{game_string}: exploitability")
  fig.tight_layout()
  path = os.path.join(out_dir, name)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
  return path
