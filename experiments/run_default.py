"""`make run`: the main job on a small default game.

1. Exact evaluation of the reference policies (uniform, CFR+) on Kuhn and Leduc.
2. ARMAC on Leduc for a few minutes (`--time_budget_s`), evaluated exactly as it trains;
   the curve is written to runs/default_<game>/curve.png.
"""

import json
import os
import shutil

import torch
from absl import app, flags, logging

from armac_spiel import evaluation, runs

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_float("time_budget_s", 180.0, "ARMAC training seconds (evaluation excluded).")
flags.DEFINE_string("out_dir", None, "Run directory (default runs/default_<game>).")
flags.DEFINE_integer("seed", 0, "Seed.")


def main(argv):
  del argv
  torch.set_num_threads(1)
  for game in ("kuhn_poker", FLAGS.game_name):
    for name, probs in (("uniform", evaluation.uniform_table(game)),
                        ("cfr_plus:100", evaluation.cfr_plus_table(game, 100))):
      result = evaluation.evaluate(game, probs)
      result["policy"] = name
      print(json.dumps(result))
  out = FLAGS.out_dir or os.path.join("runs", f"default_{FLAGS.game_name}")
  if os.path.exists(out) and not os.path.exists(os.path.join(out, "checkpoint.pt")):
    shutil.rmtree(out)
  if os.path.exists(os.path.join(out, "DONE")):
    shutil.rmtree(out)  # a finished default run: start a fresh one
  spec = runs.resolve_spec("armac", FLAGS.game_name, FLAGS.seed, out,
                           time_budget_s=FLAGS.time_budget_s, device="auto",
                           resume=os.path.exists(os.path.join(out, "checkpoint.pt")))
  logging.info("training ARMAC on %s for %.0f s into %s", FLAGS.game_name,
               FLAGS.time_budget_s, out)
  rows = runs.run(spec)
  print("ARMAC exploitability of the average policy (chips), by training time:")
  for r in rows:
    print(f"  epoch {r['epoch']:5d}  episodes {r['episodes']:9d}  train {r['train_s']:7.1f} s"
          f"  exploitability {r['exploitability']:.4f}")
  print(f"curve: {os.path.join(out, 'curve.png')}")


if __name__ == "__main__":
  app.run(main)
