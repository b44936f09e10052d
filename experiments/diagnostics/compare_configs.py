"""Fixed-epoch comparison of ARMAC config variants on the same seeds.

  python -m experiments.diagnostics.compare_configs --game_name=leduc_poker --epochs=100 \
      --every=50 --seeds=3,4 --arm=base= --arm=current=policy_draw=current,max_snapshots=1

Each `--arm=NAME=KEY=VALUE[,KEY=VALUE...]` overrides the game's tuned config (an empty
override list is the config itself). Every arm trains ARMAC for `--epochs` epochs on each
seed (the same seeds for every arm, so arms differ only by their overrides) and reports
the exact exploitability of the average policy (the actor) every `--every` epochs, then a
table: one row per arm, the per-seed values and their mean at each reported epoch, and
the mean training seconds per epoch (indicative only on a shared machine).
Epochs, not seconds: the comparison does not depend on the machine's load.
"""

import json
import multiprocessing as mp

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (tree must fit).")
flags.DEFINE_integer("epochs", 100, "Epochs per run.")
flags.DEFINE_integer("every", 50, "Epochs between evaluations.")
flags.DEFINE_list("seeds", ["3", "4"], "Seeds (the benchmark uses 0-2: tune on 3 and up).")
flags.DEFINE_multi_string("arm", ["base="], "NAME=OVERRIDES (config --set syntax).")
flags.DEFINE_integer("parallel", 2, "Runs at a time.")


def run_one(task):
  name, sets, game, seed, epochs, every = task
  import torch
  torch.set_num_threads(1)
  from armac_spiel import config as config_lib
  from armac_spiel import evaluation, runs
  from armac_spiel.armac import ARMAC
  spec = runs.resolve_spec("armac", game, seed, "/dev/null", sets=config_lib.parse_sets(
      [sets] if sets else []), max_steps=epochs, device="cpu")
  learner = ARMAC(game, spec.config, seed)
  import time
  out, train_s = {}, 0.0
  for e in range(1, epochs + 1):
    t0 = time.perf_counter()
    learner.step()
    train_s += time.perf_counter() - t0
    if e % every == 0 or e == epochs:
      out[e] = evaluation.exploitability(game, learner.average_policy().table())
  print(json.dumps({"arm": name, "seed": seed, "exploitability": out,
                    "train_s_per_epoch": train_s / epochs}), flush=True)
  return name, seed, out, train_s / epochs


def parse_arm(text: str):
  name, sep, sets = text.partition("=")
  if not sep or not name:
    raise app.UsageError(f"--arm={text!r}: must be NAME=OVERRIDES (e.g. base= or "
                         f"cur=policy_draw=current)", exitcode=2)
  return name, sets


def main(argv):
  del argv
  arms = [parse_arm(a) for a in FLAGS.arm]
  seeds = [int(s) for s in FLAGS.seeds]
  from armac_spiel import config as config_lib
  from armac_spiel import runs
  for name, sets in arms:  # bad overrides fail here, before any training
    try:
      runs.resolve_spec("armac", FLAGS.game_name, 0, "/dev/null", max_steps=FLAGS.epochs,
                        sets=config_lib.parse_sets([sets] if sets else []))
    except config_lib.ConfigError as e:
      raise app.UsageError(f"--arm={name}: {e}", exitcode=2)
  tasks = [(name, sets, FLAGS.game_name, s, FLAGS.epochs, FLAGS.every)
           for s in seeds for name, sets in arms]
  with mp.get_context("spawn").Pool(FLAGS.parallel, maxtasksperchild=1) as pool:
    results = pool.map(run_one, tasks)
  by = {(n, s): o for n, s, o, _ in results}
  secs = {(n, s): t for n, s, _, t in results}
  marks = sorted(next(iter(by.values())))
  print(f"\n{FLAGS.game_name}, seeds {seeds}: average-policy exploitability per seed (mean)")
  print("| arm | " + " | ".join(f"epoch {m}" for m in marks) + " | train s/epoch |")
  print("|---|" + "---|" * (len(marks) + 1))
  for name, _ in arms:
    cells = []
    for m in marks:
      vals = [by[(name, s)][m] for s in seeds]
      cells.append(", ".join(f"{v:.4f}" for v in vals) + f" ({np.mean(vals):.4f})")
    cells.append(f"{np.mean([secs[(name, s)] for s in seeds]):.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
