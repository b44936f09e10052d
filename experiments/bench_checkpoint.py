"""Checkpoint size: replays that store encodings against replays that store tree ids.

  python -m experiments.bench_checkpoint --out=bench_checkpoint.json

Trains ARMAC (per-game config, row-wise W fit so that both variants are the same learner)
for `--epochs` epochs twice with the same seed: once storing encodings in the replays
(`unique_inputs=False`, the path every sampler has) and once storing compiled-tree ids
(the default with the tree sampler), and writes the size of each `torch.save`d
checkpoint and their ratio.

  python -m experiments.bench_checkpoint --mode=config --epochs=100 \
      --set=actor_fit=states,policy_draw=current,max_snapshots=1

`--mode=config` trains the game's tuned config (with `--set` overrides) once and writes the
checkpoint's size and the bytes of each of its top-level parts (replays, per-state sums,
policy buffer, ...).
"""

import io
import json
import os
import tempfile

import torch
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel import runs
from armac_spiel.armac import ARMAC
from armac_spiel.atomic import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (tree must fit).")
flags.DEFINE_integer("epochs", 40, "Epochs before the checkpoint.")
flags.DEFINE_string("out", "bench_checkpoint.json", "Output JSON.")
flags.DEFINE_enum("mode", "ids", ["ids", "config"], "ids: encodings against ids (row-wise "
                  "fits); config: the tuned config with --set, sizes per part.")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...] (mode=config).")
flags.DEFINE_integer("seed", 0, "Seed.")


def checkpoint_bytes(learner: ARMAC) -> int:
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "checkpoint.pt")
    torch.save(learner.state_dict(), path)
    return os.path.getsize(path)


def part_bytes(state: dict) -> dict:
  """Serialised bytes of each top-level entry of a state dict."""
  out = {}
  for k, v in state.items():
    buf = io.BytesIO()
    torch.save(v, buf)
    out[k] = buf.tell()
  return out


def run_config() -> dict:
  try:
    spec = runs.resolve_spec("armac", FLAGS.game_name, FLAGS.seed, "/dev/null",
                             sets=config_lib.parse_sets(FLAGS.set), max_steps=FLAGS.epochs)
  except config_lib.ConfigError as e:
    raise app.UsageError(str(e), exitcode=2)
  learner = ARMAC(FLAGS.game_name, spec.config, FLAGS.seed)
  for _ in range(FLAGS.epochs):
    learner.step()
  return {"game": FLAGS.game_name, "epochs": FLAGS.epochs, "set": FLAGS.set,
          "bytes": checkpoint_bytes(learner), "parts": part_bytes(learner.state_dict())}


def main(argv):
  del argv
  torch.set_num_threads(1)
  if FLAGS.mode == "config":
    out = run_config()
    atomic_write_text(FLAGS.out, json.dumps(out, indent=1))
    print(json.dumps(out))
    return
  spec = runs.resolve_spec("armac", FLAGS.game_name, 0, "/dev/null", max_steps=FLAGS.epochs)
  cfg = spec.config.replace(regret_fit="rows", actor_fit="rows", regret_discount="none",
                            regret_lstsq=0)
  out = {"game": FLAGS.game_name, "epochs": FLAGS.epochs}
  for key, unique in (("encodings", False), ("ids", True)):
    learner = ARMAC(FLAGS.game_name, cfg, 0, unique_inputs=unique)
    for _ in range(FLAGS.epochs):
      learner.step()
    out[f"{key}_bytes"] = checkpoint_bytes(learner)
    out[f"{key}_regret_rows"] = len(learner.regret_fit)
  out["ratio"] = out["encodings_bytes"] / out["ids_bytes"]
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
