"""Checkpoint size: replays that store encodings against replays that store tree ids.

  python -m experiments.bench_checkpoint --out=bench_checkpoint.json

Trains ARMAC (per-game config, row-wise W fit so that both variants are the same learner)
for `--epochs` epochs twice with the same seed: once storing encodings in the replays
(`unique_inputs=False`, the path every sampler has) and once storing compiled-tree ids
(the default with the tree sampler), and writes the size of each `torch.save`d
checkpoint and their ratio.
"""

import json
import os
import tempfile

import torch
from absl import app, flags

from armac_spiel import runs
from armac_spiel.armac import ARMAC
from armac_spiel.atomic import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (tree must fit).")
flags.DEFINE_integer("epochs", 40, "Epochs before the checkpoint.")
flags.DEFINE_string("out", "bench_checkpoint.json", "Output JSON.")


def checkpoint_bytes(learner: ARMAC) -> int:
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "checkpoint.pt")
    torch.save(learner.state_dict(), path)
    return os.path.getsize(path)


def main(argv):
  del argv
  torch.set_num_threads(1)
  spec = runs.resolve_spec("armac", FLAGS.game_name, 0, "/dev/null", max_steps=FLAGS.epochs)
  cfg = spec.config.replace(regret_fit="rows", actor_fit="rows")
  out = {"game": FLAGS.game_name, "epochs": FLAGS.epochs}
  for key, unique in (("encodings", False), ("ids", True)):
    learner = ARMAC(FLAGS.game_name, cfg, 0, unique_inputs=unique)
    for _ in range(FLAGS.epochs):
      learner.step()
    out[f"{key}_bytes"] = checkpoint_bytes(learner)
    out[f"{key}_regret_rows"] = len(learner.regret_replay)
  out["ratio"] = out["encodings_bytes"] / out["ids_bytes"]
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
