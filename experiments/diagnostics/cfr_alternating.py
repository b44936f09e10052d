"""Diagnostic: exact tabular CFR with simultaneous vs alternating updates, the question
behind ARMAC's `alternating_updates` (ARMAC's regrets are CFR's, estimated from samples).

  python -m experiments.diagnostics.cfr_alternating --game_name=kuhn_poker --iterations=30,60,120,300

Prints the average policy's exploitability after each listed iteration for OpenSpiel's
Python CFR with each combination of alternating updates and linear averaging.
"""

import json

import pyspiel
from absl import app, flags
from open_spiel.python.algorithms import cfr, exploitability

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "kuhn_poker", "OpenSpiel game string.")
flags.DEFINE_list("iterations", ["30", "60", "120", "300"], "Iterations to report.")


def main(argv):
  del argv
  game = pyspiel.load_game(FLAGS.game_name)
  marks = sorted(int(i) for i in FLAGS.iterations)
  for alternating in (False, True):
    for linear in (False, True):
      solver = cfr._CFRSolver(game, regret_matching_plus=False,  # pylint: disable=protected-access
                              alternating_updates=alternating, linear_averaging=linear)
      row = {}
      for it in range(1, marks[-1] + 1):
        solver.evaluate_and_update_policy()
        if it in marks:
          row[it] = round(float(exploitability.exploitability(game, solver.average_policy())), 4)
      print(json.dumps({"alternating_updates": alternating, "linear_averaging": linear,
                        "exploitability": row}))


if __name__ == "__main__":
  app.run(main)
