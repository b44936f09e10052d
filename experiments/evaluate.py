"""Exact evaluation of a policy: exploitability and NashConv from OpenSpiel's C++ evaluators.

  python -m experiments.evaluate --game_name=leduc_poker --policy=cfr_plus:100
  python -m experiments.evaluate --game_name=kuhn_poker --policy=runs/x/policy.json

--policy is any spec of `armac_spiel.policy_io.resolve_policy`: `uniform`, `always_call`,
`always_raise`, `cfr_plus:N` (N iterations of pyspiel's CFR+, the tabular reference), a run
directory (its policy.json; `RUN_DIR:mixed` for policy_mixed.json) or a policy-v1 JSON
file. The last line printed is one JSON object.
"""

import json
import sys
import time

from absl import app, flags

from armac_spiel import evaluation, policy_io
from games import GameError, load_game

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_string("policy", "uniform", "uniform | always_call | always_raise | cfr_plus:N | "
                    "RUN_DIR | RUN_DIR:mixed | PATH.json (policy-v1).")
flags.DEFINE_string("export", None, "Write the evaluated policy here (policy-v1).")


def main(argv):
  del argv
  t0 = time.perf_counter()
  try:
    load_game(FLAGS.game_name)
    probs = policy_io.resolve_policy(FLAGS.game_name, FLAGS.policy)
    result = evaluation.evaluate(FLAGS.game_name, probs)
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
