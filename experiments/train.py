"""Train one algorithm on an OpenSpiel game and log exact exploitability curves.

  python -m experiments.train --game_name=leduc_poker --seed=0 --time_budget_s=120 \
      --out_dir=runs/leduc_s0 [--algo=armac] [--config=experiments/configs/leduc_poker.yaml] \
      [--device=auto|cpu|cuda] [--eval_every=50] [--resume] [--set=critic_lr=0.001,...]

`--algo` is any registered learner (armac, cfr_plus, es_mccfr, deep_cfr, nfsp, ...) or an
alias (armac_sched_discrete, armac_sched_continuous). For ARMAC, without --config,
experiments/configs/<game>.yaml is used when it exists. --set overrides any config field or
hyper-parameter; the dedicated flags override both. Writes config.json, provenance.json,
metrics.jsonl, checkpoint.pt, policy.json, curve.png and DONE into --out_dir
(armac_spiel/runs/rundir.py); with --tensorboard also TensorBoard event files
(armac_spiel/tensorboard.py). A progress bar shows training seconds against the budget (plain
lines when stdout is not a terminal); absl logs go to <out_dir>/train.INFO.
"""

import sys

import torch
from absl import app, flags, logging

from armac_spiel import progress, runs
from armac_spiel import tensorboard as tb
from armac_spiel.armac import NonFiniteLossError
from armac_spiel.atomic import AtomicWriteError
from armac_spiel.config import SCHEDULER_MODES, parse_sets
from armac_spiel.learner import import_learner_modules
from armac_spiel.params import ConfigError
from armac_spiel.runs import rundir
from armac_spiel.runs.lock import RunLock, RunLockedError
from games import SAMPLER_BACKENDS, GameError

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "armac", "Algorithm: a registered learner or an alias.")
flags.DEFINE_multi_string("learner_module", [], "Python module(s) to import first, e.g. one "
                          "that calls armac_spiel.runs.register_learner (your own code).")
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_integer("seed", 0, "Random seed (networks, sampler, buffers).")
flags.DEFINE_float("time_budget_s", None, "Training seconds, evaluation excluded.")
flags.DEFINE_integer("max_epochs", None, "ARMAC epoch budget (overrides config max_epochs).")
flags.DEFINE_integer("max_steps", None, "Step budget of the other algorithms.")
flags.DEFINE_string("out_dir", None, "Run directory.")
flags.DEFINE_string("config", None, "YAML config (ARMAC keys and scheduler sections, or the "
                    "algorithm's hyper-parameters); for ARMAC, 'derived': the config derived "
                    "from the game even where experiments/configs has a tuned YAML.")
flags.DEFINE_string("device", "auto", "auto | cpu | cuda.")
flags.DEFINE_integer("eval_every", None, "Steps (ARMAC: epochs) between exact evaluations.")
flags.DEFINE_float("eval_every_s", None, "Training seconds between exact evaluations.")
flags.DEFINE_float("eval_fraction", None, "Most share of the run's seconds that exact "
                   "evaluations take: a due evaluation waits until it fits (default 0.1; "
                   "--eval_every, --eval_every_s or --set=eval_every=N fix the cadence "
                   "instead; 0: fixed).")
flags.DEFINE_bool("resume", False, "Continue the run in --out_dir from its checkpoint.")
flags.DEFINE_enum("scheduler", None, list(SCHEDULER_MODES),
                  "Per-state scheduler between actor and regret policies (ARMAC).")
flags.DEFINE_enum("sampler", None, list(SAMPLER_BACKENDS), "Sampler backend (ARMAC).")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...] (or repeat "
                          "the flag); e.g. --set=critic_lr=0.001,critic_hidden=[64,64].")
flags.DEFINE_bool("plot", True, "Write curve.png at the end.")
flags.DEFINE_enum("evaluation", "auto", ["auto", "exact", "learned_br", "lbr"],
                  "Exploitability at each evaluation: exact, or a lower bound by sampled play "
                  "(learned_br; lbr for poker); auto: exact when the compiled tree holds the "
                  "game, else learned_br.")
flags.DEFINE_bool("tensorboard", False, "Write TensorBoard event files into --out_dir "
                  "(tensorboard --logdir=<out_dir or its parent>).")
flags.DEFINE_bool("progress", True, "Show a progress bar (plain lines when stdout is not a "
                  "terminal); absl logs then go to <out_dir>/train.INFO.")
flags.DEFINE_integer("threads", 1, "torch intra-op threads (tiny nets: 1 is fastest).")
flags.DEFINE_string("record_replay", None, "Record episodes for deterministic replay into "
                    "this directory (verify: python -m experiments.replay_verify DIR).")
flags.DEFINE_float("replay_fraction", 1.0, "Fraction of episodes recorded (chosen by a hash "
                   "of seed and episode index, see armac_spiel/recording/format.py).")
flags.DEFINE_integer("replay_episodes_per_file", 1000, "Recorded episodes per replay file.")
flags.DEFINE_bool("replay_gzip", False, "gzip the replay files.")


def spec_from_flags() -> runs.RunSpec:
  """The run the flags ask for (recording: --record_replay, else the YAML's
  deterministic_replay section; resolved by runs.resolve_spec)."""
  record = {"out_dir": FLAGS.record_replay, "fraction": FLAGS.replay_fraction,
            "episodes_per_file": FLAGS.replay_episodes_per_file, "gzip": FLAGS.replay_gzip}
  max_steps = FLAGS.max_epochs if FLAGS.max_epochs is not None else FLAGS.max_steps
  return runs.resolve_spec(
      FLAGS.algo, FLAGS.game_name, FLAGS.seed, FLAGS.out_dir, config_path=FLAGS.config,
      sets=parse_sets(FLAGS.set), time_budget_s=FLAGS.time_budget_s,
      max_steps=max_steps, eval_every=FLAGS.eval_every, eval_every_s=FLAGS.eval_every_s,
      eval_fraction=FLAGS.eval_fraction, scheduler=FLAGS.scheduler, sampler=FLAGS.sampler,
      device=FLAGS.device, resume=FLAGS.resume, plot=FLAGS.plot, record=record,
      evaluation=FLAGS.evaluation)


def make_loggers(spec: runs.RunSpec, show_progress: bool, tensorboard: bool) -> list:
  """Progress display and TensorBoard writer for runs.run(loggers=...)."""
  out = []
  if show_progress:
    progress.log_to_file(spec.out_dir, "train")
    out.append(progress.for_run(spec))
  if tensorboard:
    out.append(tb.for_run(spec))
  return out


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  torch.set_num_threads(FLAGS.threads)
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  try:
    import_learner_modules(FLAGS.learner_module)
    spec = spec_from_flags()
    with RunLock(spec.out_dir):  # one writer per run directory
      loggers = make_loggers(spec, FLAGS.progress, FLAGS.tensorboard)
      try:
        rows = runs.run(spec, loggers=loggers)
      finally:
        for lg in loggers:  # closing twice is harmless; a failed run keeps its events
          lg.close()
  except (GameError, ConfigError, rundir.CheckpointError, ValueError, ImportError,
          RunLockedError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except NonFiniteLossError as e:  # a learning rate too large for the data, most often
    print(f"error: {e}; --out_dir={FLAGS.out_dir} keeps the run up to its last evaluation: "
          "train again into a new --out_dir", file=sys.stderr)
    return 2
  except (AtomicWriteError, rundir.MetricsWriteError) as e:  # a full disk, an I/O error
    print(f"error: {e}; the last checkpoint is intact: fix the cause and pass --resume",
          file=sys.stderr)
    return 1
  logging.info("done: %s", rows[-1] if rows else None)
  print(rows[-1] if rows else {})
  return 0


if __name__ == "__main__":
  app.run(main)
