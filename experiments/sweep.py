"""Seed sweep over games x algorithms, inline or on Ray; resumable, streams results.

  python -m experiments.sweep --games=kuhn_poker,leduc_poker \
      --algos=armac,armac_sched_discrete,armac_sched_continuous,deep_cfr,nfsp,cfr_plus,es_mccfr \
      --seeds=5 --time_budget_s=300 --out_dir=runs/sweep \
      [--ray_address=local|auto|none|HOST:PORT] [--num_cpus=N] [--cpus_per_task=1] \
      [--max_epochs=N] [--max_steps=N] [--armac_config=PATH] [--baseline_hparams=PATH]

Each (game, algo, seed) trains into OUT/<game>/<algo>/seed_<s>/ (config.json,
provenance.json, metrics.jsonl, checkpoint.pt, policy.json, DONE); OUT/sweep.jsonl gets one
summary line per finished run. A run that raises or is killed is recorded there as failed,
with its error and its log (OUT/<game>/<algo>/seed_<s>/run.log), and the others go on;
inline (--ray_address=none) each run has its own process unless --noisolate. Rerunning
skips runs with DONE, so it retries only the failed and unfinished runs (resumed from their
checkpoint). `--seeds=5` means seeds 0..4; `--seeds=0,3` lists them. Then
`python -m experiments.plot OUT` draws the curves and the table.

Exit status: 0 when every run is done (or was already); 2 for bad flags (no run started);
100 + N when N runs failed (N capped at 155).
"""

import sys

from absl import app, flags, logging

from armac_spiel import progress
from armac_spiel.learner import import_learner_modules
from armac_spiel.params import ConfigError
from armac_spiel.runs import sweep

FLAGS = flags.FLAGS
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "OpenSpiel game strings.")
flags.DEFINE_list("algos", ["armac", "armac_sched_discrete", "armac_sched_continuous",
                            "deep_cfr", "nfsp", "cfr_plus", "es_mccfr"],
                  "Algorithms: registered learners or aliases (armac_spiel.runs.spec).")
flags.DEFINE_string("seeds", "5", "A count N (seeds 0..N-1) or a comma list of seeds.")
flags.DEFINE_multi_string("learner_module", [], "Python module(s) to import first, e.g. one "
                          "that calls armac_spiel.runs.register_learner (your own code).")
flags.DEFINE_float("time_budget_s", None, "Training seconds per run, evaluation excluded.")
flags.DEFINE_integer("max_epochs", None, "ARMAC epoch budget per run.")
flags.DEFINE_integer("max_steps", None, "Baseline step (iteration) budget per run.")
flags.DEFINE_string("out_dir", None, "Sweep directory.")
flags.DEFINE_string("armac_config", None,
                    "ARMAC YAML for every game (default experiments/configs/<game>.yaml).")
flags.DEFINE_string("baseline_hparams", None,
                    "YAML mapping algo -> hyper-parameters for the baselines (e.g. "
                    "deep_cfr: {num_traversals: 64}).")
flags.DEFINE_float("eval_every_s", None, "Training seconds between evaluations (ARMAC: "
                   "besides its config's eval_every epochs).")
flags.DEFINE_integer("eval_every_steps", None, "Baselines: steps between evaluations.")
flags.DEFINE_string("ray_address", "local",
                    "local: start Ray on this machine; none: run inline without Ray; "
                    "auto or HOST:PORT: connect to that Ray cluster.")
flags.DEFINE_integer("num_cpus", None, "CPUs of the local Ray (default: all).")
flags.DEFINE_float("cpus_per_task", 1.0, "CPUs Ray reserves for each run.")
flags.DEFINE_string("device", "cpu", "cpu | cuda | auto for every run.")
flags.DEFINE_integer("threads", 1, "torch intra-op threads per run.")
flags.DEFINE_bool("tensorboard", True, "TensorBoard event files in every run directory "
                  "(tensorboard --logdir <out_dir> compares seeds and algorithms).")
flags.DEFINE_bool("progress", True, "Show runs done, running, failed and remaining (plain "
                  "lines when stdout is not a terminal); absl logs go to <out_dir>/sweep.INFO.")
flags.DEFINE_bool("isolate", True, "With --ray_address=none: one child process per run, so "
                  "a run that is killed or crashes does not end the sweep.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  try:
    import_learner_modules(FLAGS.learner_module)
    seeds = sweep.parse_seeds(FLAGS.seeds)
    bad = [a for a in FLAGS.algos if a not in sweep.known_algorithms()]
    if bad:
      raise ConfigError(f"--algos: unknown {bad}; allowed: {sweep.known_algorithms()}")
    tasks = sweep.make_tasks(
        FLAGS.out_dir, FLAGS.games, FLAGS.algos, seeds, time_budget_s=FLAGS.time_budget_s,
        max_epochs=FLAGS.max_epochs, max_steps=FLAGS.max_steps,
        armac_config=FLAGS.armac_config, baseline_hparams=FLAGS.baseline_hparams,
        eval_every_s=FLAGS.eval_every_s,
        eval_every_steps=FLAGS.eval_every_steps, device=FLAGS.device, threads=FLAGS.threads,
        tensorboard=FLAGS.tensorboard)
  except (ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sweep.write_sweep_info(FLAGS.out_dir, {
      "games": FLAGS.games, "algos": FLAGS.algos, "seeds": seeds,
      "time_budget_s": FLAGS.time_budget_s, "max_epochs": FLAGS.max_epochs,
      "max_steps": FLAGS.max_steps, "armac_config": FLAGS.armac_config,
      "baseline_hparams": FLAGS.baseline_hparams,
      "ray_address": FLAGS.ray_address, "num_cpus": FLAGS.num_cpus,
      "cpus_per_task": FLAGS.cpus_per_task, "argv": sys.argv})
  bar = None
  if FLAGS.progress:
    progress.log_to_file(FLAGS.out_dir, "sweep")
    bar = progress.SweepProgress(len(tasks))
  logging.info("sweep: %d runs into %s", len(tasks), FLAGS.out_dir)
  try:
    out = sweep.run_sweep(tasks, FLAGS.out_dir, ray_address=FLAGS.ray_address,
                          num_cpus=FLAGS.num_cpus, cpus_per_task=FLAGS.cpus_per_task,
                          isolate=FLAGS.isolate, learner_modules=FLAGS.learner_module,
                          progress=bar)
  finally:
    if bar is not None:
      bar.close()
  counts = {k: sum(s["status"] == k for s in out) for k in ("done", "skipped", "failed")}
  print(f"sweep {FLAGS.out_dir}: {counts['done']} done, {counts['skipped']} skipped, "
        f"{counts['failed']} failed")
  for s in out:
    if s["status"] == "failed":
      print(f"  failed {s['game']}/{s['algo']}/seed_{s['seed']}: {s['error']} "
            f"(log: {s.get('log')})", file=sys.stderr)
  return 100 + min(counts["failed"], 155) if counts["failed"] else 0


if __name__ == "__main__":
  app.run(main)
