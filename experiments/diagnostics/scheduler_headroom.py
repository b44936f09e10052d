"""How low can the scheduler's mix go on a run's final parts? CFR-BR on parts that stand still.

  python -m experiments.diagnostics.scheduler_headroom --run_dir=RUN [--iterations=256] \
      [--report_at=1,2,4,8,16,32,64,128,256]

RUN is a finished scheduler run with utility_computation.strategy best_response (the tree
holds its game). Its final parts, pi_rm = RM(W) and the actor pibar, are frozen; then the
scheduler's own update (scheduler.utilities.best_response_utilities and
MetaRegretManager.update, regret matching+ over the run's lambda bins) runs --iterations
times against them, twice: warm (from a copy of the run's manager, the state its last
update left) and cold (a fresh manager). At each report point it prints the exploitability
of pi_mix at the current iterate and at this solve's average (each iterate's lambda
weighted by (t + 1) times the player's own reach of the state: with fixed parts the
average policy of the iterates' pi_mix is pi_mix at that average lambda). The first lines
give the run's deployed mix, pi_avg, pi_rm, the best global lambda and the manager's
current and average lambda, all on the same parts.

In training the parts move every epoch; the gap between the deployed mix and what a long
solve reaches on the final parts is what tracking them costs. The last line is one JSON
object.
"""

import copy
import json

import torch
from absl import app, flags

from armac_spiel.runs import load_run
from armac_spiel.scheduler.meta_regret import MetaRegretManager
from armac_spiel.scheduler.metrics import best_global_lambda
from armac_spiel.scheduler.utilities import best_response_utilities
from games.tree import compile_tree

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A finished best_response scheduler run directory.")
flags.DEFINE_integer("iterations", 256, "CFR-BR iterations on the frozen parts.")
flags.DEFINE_list("report_at", ["1", "2", "4", "8", "16", "32", "64", "128", "256"],
                  "Iterations to report.")


def solve(tree, parts, mgr: MetaRegretManager, bins, iterations: int, report: set) -> list:
  """[(iteration, exploitability of the current iterate's pi_mix, of the average's)]."""
  pi_rm, pi_avg = parts
  keys = torch.arange(tree.num_infostates)
  b = torch.as_tensor(bins, dtype=torch.float64)
  num = torch.zeros(tree.num_infostates, 1, dtype=torch.float64)
  den = torch.zeros_like(num)
  out = []
  for i in range(iterations):
    lam = (mgr.current_probs(keys).double() @ b)[:, None]
    util, res = best_response_utilities(tree, pi_rm, pi_avg, lam, bins)
    w = (i + 1) * res.own_reach.double()[:, None]
    num += w * lam
    den += w
    mgr.update(keys, util, smooth=False)
    if i + 1 in report:
      avg = torch.where(den > 0, num / den.clamp_min(1e-300), lam)
      mix = avg * pi_rm + (1 - avg) * pi_avg
      out.append((i + 1, float(res.br_values.sum()) / 2, float(tree.exploitability(mix))))
  return out


def main(argv):
  del argv
  torch.set_num_threads(1)
  learner = load_run(FLAGS.run_dir)
  ad = learner.scheduler
  if ad is None or ad.strategy != "best_response":
    raise app.UsageError("--run_dir: not a scheduler run with utility_computation.strategy "
                         "best_response (the exact strategy; the tree must hold the game)")
  tree = compile_tree(ad.game_string)
  parts = ad.parts(learner)
  n = tree.num_infostates

  def expl(lam: torch.Tensor) -> float:
    return float(tree.exploitability(ad.mixed_table(learner, lam, parts)[0]))

  head = {"epoch": learner.epoch, "deployed": expl(ad.deployed_lambda(learner)),
          "pi_avg": expl(torch.zeros(n, 1, dtype=torch.float64)),
          "pi_rm": expl(torch.ones(n, 1, dtype=torch.float64)),
          "best_global_lambda": best_global_lambda(lambda xs: [
              expl(torch.full((n, 1), x, dtype=torch.float64)) for x in xs])[1],
          "manager_current": expl(ad.current_lambda(learner)),
          "manager_average": expl(ad.average_lambda(learner))}
  print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                 for k, v in head.items()), flush=True)
  report = {int(x) for x in FLAGS.report_at}
  out = dict(head)
  mgr = ad.trainer.manager
  for name, start in (("warm", copy.deepcopy(mgr)), ("cold", MetaRegretManager(mgr.cfg))):
    rows = solve(tree, parts, start, ad.bins, FLAGS.iterations, report)
    for it, cur, avg in rows:
      print(f"{name} iteration {it}: current {cur:.4f} average {avg:.4f}", flush=True)
    out[name] = [{"iteration": it, "current": cur, "average": avg} for it, cur, avg in rows]
  print(json.dumps(out))
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("run_dir")
  app.run(main)
