"""`make run`: the main job on a small default game.

Evaluates the reference policies (uniform, CFR+) exactly so that a new user sees real
numbers at once, then trains ARMAC on Leduc for a few minutes when the trainer exists.
"""

import json

from absl import app, flags

from armac_spiel import evaluation

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")


def main(argv):
  del argv
  for game in ("kuhn_poker", FLAGS.game_name):
    for name, probs in (("uniform", evaluation.uniform_table(game)),
                        ("cfr_plus:100", evaluation.cfr_plus_table(game, 100))):
      result = evaluation.evaluate(game, probs)
      result["policy"] = name
      print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
