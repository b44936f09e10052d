"""`make run`: the main job on a small default game, on one screen.

1. Exact exploitability of the reference policies (uniform, CFR+) on Kuhn and --game_name.
2. ARMAC with the scheduler (--scheduler, discrete by default) on --game_name for
   --time_budget_s training seconds, evaluated exactly as it trains: the average policy, the
   current (regret-matching) policy and the scheduler's deployed mix of the two, with a
   progress bar (plain lines when stdout is not a terminal) and, with --tensorboard
   (on by default), TensorBoard event files in the run directory. absl logs go to
   <out_dir>/train.INFO.
3. A summary table: the final exploitability of the deployed mix, the average and the
   current policy, and where the curve, the policies, the metrics and the TensorBoard logs
   are.
"""

import os
import shutil

import torch
from absl import app, flags

from armac_spiel import evaluation, progress, runs

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_float("time_budget_s", 180.0, "ARMAC training seconds (evaluation excluded).")
flags.DEFINE_string("out_dir", None, "Run directory (default runs/default_<game>).")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_enum("scheduler", "discrete", ["off", "discrete", "continuous"],
                  "The scheduler's mode (off: ARMAC alone).")
flags.DEFINE_bool("tensorboard", True, "Write TensorBoard event files into the run directory.")


def summary_table(rows: list[tuple[str, str]]) -> str:
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def main(argv):
  del argv
  torch.set_num_threads(1)
  games = list(dict.fromkeys(("kuhn_poker", FLAGS.game_name)))
  print("Reference policies, exact exploitability (chips per hand):")
  for game in games:
    cells = []
    for name, probs in (("uniform", evaluation.uniform_table(game)),
                        ("cfr_plus:100", evaluation.cfr_plus_table(game, 100))):
      cells.append(f"{name} {evaluation.evaluate(game, probs)['exploitability']:.4f}")
    print(f"  {game:<14} " + "   ".join(cells))
  out = FLAGS.out_dir or os.path.join("runs", f"default_{FLAGS.game_name}")
  if os.path.exists(out) and not os.path.exists(os.path.join(out, "checkpoint.pt")):
    shutil.rmtree(out)
  if os.path.exists(os.path.join(out, "DONE")):
    shutil.rmtree(out)  # a finished default run: start a fresh one
  spec = runs.resolve_spec("armac", FLAGS.game_name, FLAGS.seed, out,
                           time_budget_s=FLAGS.time_budget_s, device="auto",
                           scheduler=FLAGS.scheduler,
                           # about 15 points on the curve, evaluations within 10% of the time
                           eval_every_s=max(2.0, FLAGS.time_budget_s / 15), eval_fraction=0.1,
                           resume=os.path.exists(os.path.join(out, "checkpoint.pt")))
  with_sched = "" if FLAGS.scheduler == "off" else f" with the {FLAGS.scheduler} scheduler"
  print(f"Training ARMAC{with_sched} on {FLAGS.game_name} for {FLAGS.time_budget_s:.0f} s into {out}:")
  progress.log_to_file(out, "train")
  bar = progress.Progress(desc="armac", interval_s=max(10.0, FLAGS.time_budget_s / 6))
  loggers = [bar.start(total_s=spec.time_budget_s, total_steps=spec.max_steps)]
  if FLAGS.tensorboard:
    from armac_spiel import tensorboard
    loggers.append(tensorboard.for_run(spec))
  try:
    rows = runs.run(spec, loggers=loggers)
  finally:
    for lg in loggers:
      lg.close()
  last = rows[-1]
  table = []
  if last.get("exploitability_mixed") is not None:
    table.append(("exploitability (deployed mix)", f"{last['exploitability_mixed']:.4f}  "
                  "(the scheduler's per-state mix of the two below)"))
  table += [("exploitability (average policy)",
            f"{last['exploitability']:.4f} chips  (epoch {last['epoch']}, "
            f"{last['episodes']:,} episodes, {last['train_s']:.0f} s training)")]
  if last.get("exploitability_current") is not None:
    table.append(("exploitability (current policy)", f"{last['exploitability_current']:.4f}"))
  table += [("curve", os.path.join(out, "curve.png")),
            ("policy", os.path.join(out, "policy.json")),
            *([("mixed policy", os.path.join(out, "policy_mixed.json"))]
              if os.path.exists(os.path.join(out, "policy_mixed.json")) else []),
            ("metrics", os.path.join(out, "metrics.jsonl"))]
  if FLAGS.tensorboard:
    table.append(("TensorBoard", f"tensorboard --logdir {out}"))
  table.append(("play against it", f"python -m experiments.play --game_name={FLAGS.game_name} "
                f"--policy={out}"))
  print("Summary:")
  print(summary_table(table))


if __name__ == "__main__":
  app.run(main)
