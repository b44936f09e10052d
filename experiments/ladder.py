"""Prints the ladder of games (games/ladder.py) with their sizes, one JSON line per rung.

  python -m experiments.ladder [--large] [--count]

Sizes: histories (all nodes of the game tree: chance, decision and terminal), decision
nodes, information states, actions and the information-state tensor's width. Small rungs are
counted by walking the tree; `--large` adds the large rungs, whose histories are Knuth
estimates (random probes) unless `--count` walks them too.
"""

import json
import time

import pyspiel
from absl import app, flags

from games import ladder, tree

FLAGS = flags.FLAGS
flags.DEFINE_bool("large", False, "Also list the large rungs (ladder.LARGE).")
flags.DEFINE_bool("count", False, "Walk the large rungs too (minutes) instead of estimating.")


def walk(game: pyspiel.Game) -> dict:
  """Counts histories, decision nodes and information states by a depth-first walk."""
  stack = [game.new_initial_state()]
  nodes = decisions = 0
  infostates = set()
  while stack:
    state = stack.pop()
    nodes += 1
    if state.is_terminal():
      continue
    if state.is_chance_node():
      stack.extend(state.child(a) for a, _ in state.chance_outcomes())
      continue
    decisions += 1
    infostates.add(state.information_state_string())
    stack.extend(state.child(a) for a in state.legal_actions())
  return {"histories": nodes, "decision_nodes": decisions, "infostates": len(infostates)}


def main(argv):
  del argv
  rungs = ladder.LADDER + (ladder.LARGE if FLAGS.large else ())
  for r in rungs:
    game = pyspiel.load_game(r.game)
    t0 = time.perf_counter()
    if r in ladder.LARGE and not FLAGS.count:
      sizes = {"histories_estimate": round(tree.knuth_estimate(game, 4096))}
    else:
      sizes = walk(game)
    print(json.dumps({"rung": r.name, "family": r.family, "game": r.game, **sizes,
                      "actions": game.num_distinct_actions(),
                      "info_state_size": game.information_state_tensor_shape()[0],
                      "seconds": round(time.perf_counter() - t0, 2)}), flush=True)


if __name__ == "__main__":
  app.run(main)
