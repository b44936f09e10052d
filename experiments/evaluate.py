"""Exploitability of a policy: exact (OpenSpiel's C++ evaluators, the compiled tree) or a
lower bound by sampled play (armac_spiel.approx).

  python -m experiments.evaluate --game_name=leduc_poker --policy=cfr_plus:100
  python -m experiments.evaluate --game_name=kuhn_poker --policy=runs/x/policy.json
  python -m experiments.evaluate --game_name=leduc_poker --policy=runs/x \
      --method=learned_br --budget_episodes=2000000 --eval_episodes=1000000
  python -m experiments.evaluate --game_name=leduc_poker --policy=runs/x --method=lbr

--method=exact (the default) prints exploitability and nash_conv; learned_br (a best
response learned from sampled episodes) and lbr (local best response, poker only) print
the estimate, its 95% half-width `ci95`, each seat's responder value and the cost
(seconds, episodes).

--policy is any spec of `armac_spiel.policy_io.resolve_policy`: `uniform`, `always_call`,
`always_raise`, `cfr_plus:N` (N iterations of pyspiel's CFR+, the tabular reference), a run
directory (its policy.json; `RUN_DIR:mixed` for policy_mixed.json) or a policy-v1 JSON
file. The last line printed is one JSON object.
"""

import json
import sys
import time

import torch
from absl import app, flags

from armac_spiel import approx, evaluation, policy_io
from games import GameError, load_game

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_string("policy", "uniform", "uniform | always_call | always_raise | cfr_plus:N | "
                    "RUN_DIR | RUN_DIR:mixed | PATH.json (policy-v1).")
flags.DEFINE_string("export", None, "Write the evaluated policy here (policy-v1).")
flags.DEFINE_enum("method", "exact", list(approx.METHODS),
                  "exact | learned_br (learned best response) | lbr (local best response, "
                  "poker).")
flags.DEFINE_integer("budget_episodes", approx.Budget().episodes,
                     "learned_br: training episodes, both seats together.")
flags.DEFINE_float("budget_s", None, "learned_br: training seconds (the first of the two "
                   "budgets reached ends training).")
flags.DEFINE_integer("eval_episodes", approx.Budget().eval_episodes,
                     "learned_br/lbr: evaluation episodes per seat (the 95% interval).")
flags.DEFINE_float("eval_s", None, "learned_br/lbr: evaluation seconds.")
flags.DEFINE_integer("seed", 0, "learned_br/lbr: seed of the sampled episodes.")


def main(argv):
  del argv
  torch.set_num_threads(1)  # small batches: threads only contend
  t0 = time.perf_counter()
  try:
    load_game(FLAGS.game_name)
    if FLAGS.method == "exact":
      probs = policy_io.resolve_policy(FLAGS.game_name, FLAGS.policy)
      result = evaluation.evaluate(FLAGS.game_name, probs)
      result.update(method="exact", ci95=0.0, episodes=0)
    else:
      approx.check_method(FLAGS.method, FLAGS.game_name)
      budget = approx.Budget(episodes=FLAGS.budget_episodes, seconds=FLAGS.budget_s,
                             eval_episodes=FLAGS.eval_episodes, eval_seconds=FLAGS.eval_s)
      # The uniform policy needs no enumeration of the game's information states.
      probs = (approx.uniform_policy if FLAGS.policy == "uniform" and not FLAGS.export
               else policy_io.resolve_policy(FLAGS.game_name, FLAGS.policy))
      est = approx.estimate(FLAGS.game_name, probs, FLAGS.method, budget, FLAGS.seed)
      result = {"game": FLAGS.game_name, **est.to_dict(),
                "episodes": est.train_episodes + 2 * est.eval_episodes}
  except (GameError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  result["policy"] = FLAGS.policy
  result["seconds"] = time.perf_counter() - t0
  if FLAGS.export:
    policy_io.export_policy(FLAGS.export, FLAGS.game_name, probs)
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  app.run(main)
