"""The scheduler's CFR-BR over lambda bins with parts that move, on exact tabular CFR.

  python -m experiments.diagnostics.diagnose_scheduler --game_name=leduc_poker --iterations=200

The two parts are OpenSpiel's CFRSolver's current and average policies, updated once per
iteration as ARMAC's pi_rm and pibar are once per epoch. After each CFR iteration the
scheduler makes one update exactly as in training (scheduler.utilities.
best_response_utilities, MetaRegretManager.accumulate / update) for each averaging rule.
Printed at the report points: the exploitability of the parts, of the best single lambda
(the search of armac_spiel.scheduler.metrics.best_global_lambda), and of pi_mix at each
rule's averaged lambda and at the current iterate. The last line is one JSON object.
"""

import json

import torch
from absl import app, flags
from open_spiel.python.algorithms import cfr

from armac_spiel.evaluation import tabularise
from armac_spiel.scheduler.config import MetaRegretConfig
from armac_spiel.scheduler.meta_regret import MetaRegretManager
from armac_spiel.scheduler.metrics import best_global_lambda
from armac_spiel.scheduler.utilities import best_response_utilities
from games import load_game
from games.tree import compile_tree

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (the tree must hold it).")
flags.DEFINE_integer("iterations", 200, "CFR iterations (one scheduler update each).")
flags.DEFINE_list("report_at", ["10", "25", "50", "100", "200"], "Iterations to print.")
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
RULES = ("linear", "discounted")


def main(argv):
  del argv
  torch.set_num_threads(1)
  g = FLAGS.game_name
  tree = compile_tree(g)
  solver = cfr.CFRSolver(load_game(g).game)
  mgrs = {r: MetaRegretManager(MetaRegretConfig(max_states=tree.num_infostates, averaging=r,
                                                regret_clip=1e6, util_clip=100.0))
          for r in RULES}
  keys = torch.arange(tree.num_infostates)
  bins = torch.tensor(BINS, dtype=torch.float64)
  report = {int(x) for x in FLAGS.report_at}
  rows = []
  for it in range(1, FLAGS.iterations + 1):
    solver.evaluate_and_update_policy()
    cur = tabularise(g, solver.current_policy())
    avg = tabularise(g, solver.average_policy())
    for m in mgrs.values():
      lam = (m.current_probs(keys).double() @ bins)[:, None]
      util, res = best_response_utilities(tree, cur, avg, lam, BINS)
      m.accumulate(keys, res.own_reach, it - 1)
      m.update(keys, util, smooth=False)
    if it in report:
      row = {"iteration": it, "pi_avg": tree.exploitability(avg),
             "pi_rm": tree.exploitability(cur),
             "best_global_lambda": best_global_lambda(lambda xs: [
                 tree.exploitability(x * cur + (1 - x) * avg) for x in xs])[1]}
      for r, m in mgrs.items():
        la = (m.average_probs(keys) @ bins)[:, None]
        lc = (m.current_probs(keys).double() @ bins)[:, None]
        row[f"mix_{r}_average"] = tree.exploitability(la * cur + (1 - la) * avg)
        row[f"mix_{r}_current"] = tree.exploitability(lc * cur + (1 - lc) * avg)
      rows.append(row)
      print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in row.items()), flush=True)
  print(json.dumps(rows))
  return 0


if __name__ == "__main__":
  app.run(main)
