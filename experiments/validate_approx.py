"""Approximate exploitability against the exact value, on the ladder of games.

  python -m experiments.validate_approx --runs_dir=RUNS --out=validate_approx.json

For each rung of games.ladder.LADDER (or --rungs) and each policy of --policies
(`uniform`, `cfr_plus:N`, or a run directory RUNS/<rung>_<name>, e.g. a short and a long
ARMAC run made with `python -m experiments.train --game_name=G --seed=S --max_epochs=N
--out_dir=RUNS/<rung>_short --noprogress --noplot`), it computes the exact exploitability
(armac_spiel.evaluation) and the lower bounds of armac_spiel.approx: learned_br, and lbr
on poker games. Each
approximate value gets two checks:
  upper: value <= exact + ci95 (a lower bound, up to its interval);
  ratio: value >= 0.8 * exact (close to the exact value).
The table is printed; --out gets every row as JSON (written atomically).
"""

import json
import os
import sys
import time

import torch
from absl import app, flags

from armac_spiel import approx, evaluation, policy_io
from armac_spiel.atomic import atomic_write_text
from armac_spiel.approx import lbr as lbr_lib
from games import ladder

FLAGS = flags.FLAGS
flags.DEFINE_string("runs_dir", None, "Directory of the run directories <rung>_<policy>.")
flags.DEFINE_list("rungs", [r.name for r in ladder.LADDER], "Ladder rungs (games.ladder).")
flags.DEFINE_list("policies", ["uniform", "short", "long"],
                  "uniform, cfr_plus:N (N iterations of OpenSpiel's CFR+), or NAME for the "
                  "run directory <runs_dir>/<rung>_NAME.")
flags.DEFINE_list("methods", ["learned_br", "lbr"], "Approximate methods (lbr: poker only).")
flags.DEFINE_integer("budget_episodes", approx.Budget().episodes,
                     "learned_br training episodes (both seats).")
flags.DEFINE_integer("eval_episodes", approx.Budget().eval_episodes,
                     "Evaluation episodes per seat.")
flags.DEFINE_integer("seed", 0, "Seed of the sampled episodes.")
flags.DEFINE_bool("stratify", True, "learned_br: weigh sampled histories by their exact reach "
                  "(armac_spiel.approx.learned_br, Strata); --nostratify: counts only.")
flags.DEFINE_string("out", None, "Write the rows here (JSON).")

RATIO = 0.8


def _policy(rung, name: str):
  if name == "uniform" or name.startswith("cfr_plus:"):
    return policy_io.resolve_policy(rung.game, name, "--policies")
  if not FLAGS.runs_dir:
    raise ValueError(f"--policies={name}: needs --runs_dir (the run {rung.name}_{name})")
  return policy_io.resolve_policy(rung.game, os.path.join(FLAGS.runs_dir,
                                                          f"{rung.name}_{name}"))


def check_row(exact: float, value: float, ci95: float) -> dict:
  """The two acceptance checks of one approximate value."""
  return {"upper_ok": value <= exact + ci95, "ratio": value / exact if exact > 0 else None,
          "ratio_ok": value >= RATIO * exact}


def main(argv):
  del argv
  torch.set_num_threads(1)  # small batches: threads only contend
  try:
    rungs = [ladder.rung(n) for n in FLAGS.rungs]
    budget = approx.Budget(episodes=FLAGS.budget_episodes, eval_episodes=FLAGS.eval_episodes)
    for m in FLAGS.methods:
      if m not in ("learned_br", "lbr"):
        raise ValueError(f"--methods: {m!r} is not learned_br or lbr")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  rows = []
  for rung in rungs:
    for name in FLAGS.policies:
      try:
        probs = _policy(rung, name)
      except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
      t0 = time.perf_counter()
      exact = float(evaluation.fast_exploitability(rung.game, probs)[0])
      row = {"rung": rung.name, "game": rung.game, "policy": name, "exact": exact,
             "exact_s": time.perf_counter() - t0}
      for m in FLAGS.methods:
        if m == "lbr":
          try:
            lbr_lib.check_applies(rung.game)
          except lbr_lib.NotPokerError:
            continue
        est = approx.estimate(rung.game, probs, m, budget, FLAGS.seed,
                              approx.LearnedBRConfig(stratify=FLAGS.stratify))
        row[m] = {**est.to_dict(), **check_row(exact, est.exploitability, est.ci95)}
      rows.append(row)
      parts = [f"{rung.name:13s} {name:8s} exact {exact:.5f}"]
      for m in FLAGS.methods:
        if m in row:
          r = row[m]
          parts.append(f"{m} {r['exploitability']:.5f} +- {r['ci95']:.5f} "
                       f"({r['ratio']:.3f}, upper {'ok' if r['upper_ok'] else 'FAIL'}, "
                       f"ratio {'ok' if r['ratio_ok'] else 'FAIL'}, {r['seconds']:.0f} s)")
      print("  ".join(parts), flush=True)
      if FLAGS.out:
        atomic_write_text(FLAGS.out, json.dumps({
            "budget_episodes": FLAGS.budget_episodes, "eval_episodes": FLAGS.eval_episodes,
            "seed": FLAGS.seed, "stratify": FLAGS.stratify, "rows": rows}, indent=1))
  for m in FLAGS.methods:
    done = [r[m] for r in rows if m in r]
    print(f"{m}: {len(done)} rows, upper check failed {sum(not d['upper_ok'] for d in done)}, "
          f"ratio check failed {sum(not d['ratio_ok'] for d in done)}")
  return 0


if __name__ == "__main__":
  app.run(main)
