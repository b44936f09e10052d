"""Pit policy A against policy B in a two-player zero-sum game (armac_spiel.match).

  python -m experiments.match --game_name=leduc_poker --a=runs/x --b=cfr_plus:100
  python -m experiments.match --game_name=kuhn_poker --a=always_raise --b=uniform --hands=5000

--a and --b are specs of `armac_spiel.policy_io.resolve_policy`: uniform, always_call,
always_raise, cfr_plus:N, RUN_DIR, RUN_DIR:mixed or a policy-v1 file. Prints A's exact
expected return in each seat and on average, then a duplicate match of --hands hands in each
seat (the same seeds with the seats swapped): A's mean return per hand with its 95%
confidence interval. The last line is one JSON object with all of it.

For a game too large to tabulate (armac_spiel.approx.in_run.enumerable), --a and --b are
`uniform` or run directories (the learner restored from checkpoint.pt: a network or
solver policy), no exact values are computed, and the hands are played through pyspiel
(armac_spiel.approx.head_to_head).
"""

import json
import os
import sys
import time

import torch
from absl import app, flags

from armac_spiel import approx, match, policy_io, runs
from armac_spiel.approx import head_to_head, in_run
from games import GameError, load_game

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (two-player zero-sum).")
flags.DEFINE_string("a", "cfr_plus:100", "Policy A: " + " | ".join(policy_io.SPEC_FORMS))
flags.DEFINE_string("b", "uniform", "Policy B: " + " | ".join(policy_io.SPEC_FORMS))
flags.DEFINE_integer("hands", 2000, "Sampled hands in each seat (0: exact values only).")
flags.DEFINE_integer("seed", 0, "Seed of the sampled hands.")
flags.DEFINE_bool("exact", True, "Compute the exact expected values.")


def frozen_spec(game_string: str, spec: str, flag: str):
  """A policy of a game too large to tabulate: uniform, or a run directory's learner."""
  if spec == "uniform":
    return approx.uniform_policy
  if os.path.isdir(spec):
    return in_run.learner_policy(runs.load_run(spec))
  raise ValueError(f"{flag}={spec!r}: {game_string!r} is too large to tabulate; give "
                   "uniform or a run directory")


def main(argv):
  del argv
  torch.set_num_threads(1)
  t0 = time.perf_counter()
  try:
    sgame = load_game(FLAGS.game_name)
    if not sgame.is_two_player_zero_sum:
      raise ValueError(f"--game_name={FLAGS.game_name!r}: match needs a two-player zero-sum "
                       f"game ({sgame.num_players} players, {sgame.game_type.utility})")
    if FLAGS.hands < 0:
      raise ValueError(f"--hands must be >= 0, got {FLAGS.hands}")
    large = not in_run.enumerable(FLAGS.game_name)
    if large:
      a = frozen_spec(FLAGS.game_name, FLAGS.a, "--a")
      b = frozen_spec(FLAGS.game_name, FLAGS.b, "--b")
    else:
      a = policy_io.resolve_policy(FLAGS.game_name, FLAGS.a, "--a")
      b = policy_io.resolve_policy(FLAGS.game_name, FLAGS.b, "--b")
  except (GameError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  out = {"game": FLAGS.game_name, "a": FLAGS.a, "b": FLAGS.b, "exact": None, "sampled": None}
  if large:
    print("the game is too large to tabulate: no exact values; hands played through pyspiel")
  if FLAGS.exact and not large:
    ex = match.exact_values(FLAGS.game_name, a, b)
    out["exact"] = ex
    print(f"exact ({ex['method']}): A in seat 0 {ex['a_seat0']:+.6f}, seat 1 "
          f"{ex['a_seat1']:+.6f}, average {ex['mean']:+.6f} per hand")
  if FLAGS.hands:
    sm = (head_to_head.sampled_match(FLAGS.game_name, a, b, FLAGS.hands, FLAGS.seed) if large
          else match.sampled_match(FLAGS.game_name, a, b, FLAGS.hands, FLAGS.seed))
    out["sampled"] = sm
    lo, hi = sm["ci95"]
    print(f"sampled ({sm['hands']} hands in each seat, duplicate): A {sm['mean']:+.4f} per hand, "
          f"95% CI [{lo:+.4f}, {hi:+.4f}]; seat 0 {sm['a_seat0']['mean']:+.4f}, seat 1 "
          f"{sm['a_seat1']['mean']:+.4f}")
  out["seconds"] = time.perf_counter() - t0
  print(json.dumps(out))
  return 0


if __name__ == "__main__":
  app.run(main)
