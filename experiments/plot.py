"""Sweep plots: exploitability vs episodes and vs training seconds, mean over seeds with a
95% bootstrap band, and a Markdown table at fixed time checkpoints.

  python -m experiments.plot runs/sweep [--checkpoints_s=10,30,60,120,300,600] \
      [--grid_points=60] [--n_boot=2000] [--reference]

Reads OUT/<game>/<algo>/seed_<s>/metrics.jsonl (the layout of experiments.sweep) and writes
OUT/curves_episodes.png, OUT/curves_seconds.png and OUT/table.md
(armac_spiel.runs.plots.plot_sweep; curves: armac_spiel.runs.curves).
"""

from __future__ import annotations

import sys

from absl import app, flags

from armac_spiel.runs import plots

FLAGS = flags.FLAGS
flags.DEFINE_list("checkpoints_s", ["10", "30", "60", "120", "300", "600"],
                  "Training seconds at which table.md reports exploitability.")
flags.DEFINE_integer("grid_points", 60, "Points of the common log-spaced grid.")
flags.DEFINE_integer("n_boot", 2000, "Bootstrap resamples of the seeds.")
flags.DEFINE_bool("reference", False, "Draw OpenSpiel's C++ CFR+ on the seconds panels.")


def main(argv):
  if len(argv) != 2:
    print("usage: python -m experiments.plot SWEEP_DIR [--checkpoints_s=...]",
          file=sys.stderr)
    return 2
  try:
    paths = plots.plot_sweep(argv[1], [float(t) for t in FLAGS.checkpoints_s],
                             FLAGS.grid_points, FLAGS.n_boot, FLAGS.reference)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for p in paths:
    print(p)
  return 0


if __name__ == "__main__":
  app.run(main)
