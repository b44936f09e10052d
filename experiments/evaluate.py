"""Exact evaluation of a policy: exploitability and NashConv from OpenSpiel's C++ evaluators.

  python -m experiments.evaluate --game_name=leduc_poker --policy=cfr_plus:100
  python -m experiments.evaluate --game_name=kuhn_poker --policy=runs/x/policy.json

--policy is `uniform`, `cfr_plus:N` (N iterations of pyspiel's CFR+, the tabular reference),
the path of an armac-spiel/policy-v1 JSON file, or a run directory: `RUN_DIR` or
`RUN_DIR:average` (its policy.json) or `RUN_DIR:mixed` (its policy_mixed.json, the
scheduler's deployed pi_mix). The last line printed is one JSON object.
"""

import json
import os
import sys
import time

from absl import app, flags

from armac_spiel import evaluation, policy_io
from games import GameError, load_game

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_string("policy", "uniform", "uniform | cfr_plus:N | PATH.json (policy-v1) | "
                    "RUN_DIR[:average|:mixed].")
RUN_POLICIES = {"average": "policy.json", "mixed": "policy_mixed.json"}
flags.DEFINE_string("export", None, "Write the evaluated policy here (policy-v1).")


def resolve_policy(game_name: str, spec: str):
  """Returns the (S, A) table for a --policy value; errors name the flag."""
  if spec == "uniform":
    return evaluation.uniform_table(game_name)
  if spec.startswith("cfr_plus:"):
    n = spec.split(":", 1)[1]
    if not n.isdigit() or int(n) < 1:
      raise ValueError(f"--policy=cfr_plus:N needs a positive integer N, got {spec!r}")
    return evaluation.cfr_plus_table(game_name, int(n))
  path = spec
  if not spec.endswith(".json"):
    run_dir, _, which = spec.rpartition(":") if ":" in spec else (spec, "", "average")
    if os.path.isdir(run_dir):
      if which not in RUN_POLICIES:
        raise ValueError(f"--policy={spec}: after RUN_DIR: give one of "
                         f"{', '.join(RUN_POLICIES)}")
      path = os.path.join(run_dir, RUN_POLICIES[which])
      if not os.path.exists(path):
        raise ValueError(f"--policy={spec}: {path} does not exist (policy_mixed.json is "
                         "written by runs with a scheduler)")
  if path.endswith(".json"):
    file_game, probs = policy_io.import_policy(path)
    if file_game != game_name:
      raise ValueError(f"--policy file {spec} is for game {file_game!r}, but "
                       f"--game_name={game_name!r}")
    return probs
  raise ValueError(f"--policy must be 'uniform', 'cfr_plus:N', a .json path or "
                   f"RUN_DIR[:average|:mixed], got {spec!r}")


def main(argv):
  del argv
  t0 = time.perf_counter()
  try:
    load_game(FLAGS.game_name)
    probs = resolve_policy(FLAGS.game_name, FLAGS.policy)
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
