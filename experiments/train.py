"""Train ARMAC on an OpenSpiel game and log exact exploitability curves.

  python -m experiments.train --game_name=leduc_poker --seed=0 --time_budget_s=120 \
      --out_dir=runs/leduc_s0 [--config=experiments/configs/leduc_poker.yaml] \
      [--device=auto|cpu|cuda] [--eval_every=50] [--resume] [--set=critic_lr=0.001,...]

Without --config, experiments/configs/<game>.yaml is used when it exists. Flags override
the config; --set overrides any config field (the README's ablations use it). Writes
config.json, provenance.json, metrics.jsonl, checkpoint.pt, policy.json, curve.png into
--out_dir.
"""

import os
import sys

import torch
from absl import app, flags, logging

from armac_spiel import config as config_lib
from armac_spiel import trainer
from games import GameError, load_game

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_integer("seed", 0, "Random seed (networks, sampler, buffers).")
flags.DEFINE_float("time_budget_s", None, "Training seconds, evaluation excluded.")
flags.DEFINE_integer("max_epochs", None, "Epoch budget (overrides config max_epochs).")
flags.DEFINE_string("out_dir", None, "Run directory.")
flags.DEFINE_string("config", None, "YAML config (ARMAC keys and scheduler sections).")
flags.DEFINE_string("device", "auto", "auto | cpu | cuda.")
flags.DEFINE_integer("eval_every", None, "Epochs between exact evaluations.")
flags.DEFINE_bool("resume", False, "Continue the run in --out_dir from its checkpoint.")
flags.DEFINE_enum("scheduler", None, list(config_lib.SCHEDULER_MODES),
                  "Per-state scheduler between actor and regret policies.")
flags.DEFINE_enum("sampler", None, list(config_lib.SAMPLERS), "Sampler backend.")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...] (or repeat "
                          "the flag); e.g. --set=critic_lr=0.001,critic_hidden=[64,64].")
flags.DEFINE_integer("threads", 1, "torch intra-op threads (tiny nets: 1 is fastest).")
flags.DEFINE_string("record_replay", None, "Record episodes for deterministic replay into "
                    "this directory (verify: python -m experiments.replay_verify DIR); "
                    "default: the YAML's deterministic_replay.replay_dir when its record "
                    "is true.")
flags.DEFINE_float("replay_fraction", 1.0, "Fraction of episodes recorded (chosen by a hash "
                   "of seed and episode index, see armac_spiel/replay.py).")
flags.DEFINE_integer("replay_episodes_per_file", 1000, "Recorded episodes per replay file.")
flags.DEFINE_bool("replay_gzip", False, "gzip the replay files.")

from armac_spiel.trainer import build_spec, default_config_path  # noqa: E402,F401


def _make_recorder(suite):
  """`make_recorder` for trainer.train from --record_replay or the YAML's
  deterministic_replay section (record, replay_dir, tolerance), or None."""
  from armac_spiel.scheduler_glue import replay_settings
  out_dir, tolerance = replay_settings(suite, FLAGS.record_replay)
  if not out_dir:
    return None
  from armac_spiel import replay
  replay.write_tolerance(out_dir, tolerance)
  return replay.recorder_factory(replay.RecorderConfig(
      out_dir, FLAGS.replay_fraction, FLAGS.replay_episodes_per_file, FLAGS.replay_gzip))


def main(argv):
  del argv
  torch.set_num_threads(FLAGS.threads)
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  flag_fields = {"eval_every": FLAGS.eval_every, "max_epochs": FLAGS.max_epochs,
                 "scheduler_mode": FLAGS.scheduler, "sampler": FLAGS.sampler}
  try:
    overrides = {**config_lib.parse_sets(FLAGS.set),
                 **{k: v for k, v in flag_fields.items() if v is not None}}
    spec, sched = build_spec(FLAGS.game_name, FLAGS.seed, FLAGS.out_dir, FLAGS.time_budget_s,
                             FLAGS.config, overrides, FLAGS.device, FLAGS.resume)
    from armac_spiel.scheduler_glue import scheduler_factory
    if FLAGS.scheduler == "off" and sched is not None:
      sched = sched.with_mode("off")  # an explicit flag beats the YAML's use_scheduler
    rows = trainer.train(spec, make_scheduler=scheduler_factory(sched, FLAGS.scheduler),
                         make_recorder=_make_recorder(sched))
  except (GameError, config_lib.ConfigError, trainer.CheckpointError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  logging.info("done: %s", rows[-1] if rows else None)
  print(rows[-1] if rows else {})
  return 0


if __name__ == "__main__":
  app.run(main)
