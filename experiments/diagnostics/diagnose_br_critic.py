"""How good is br_critic's learned best responder? Measured exactly on the compiled tree.

  python -m experiments.diagnostics.diagnose_br_critic --run_dir=RUN [--updates=25] [--seed=0] \
      [--set=br_steps=64,br_explore=0.05]

RUN is a finished scheduler run on a game the tree holds (any strategy: only its final parts,
pi_rm and pibar, and the manager's average lambda are read). Two fresh best-response
critics (armac_spiel.scheduler.br_critic.BRCritic, with the run's utility_computation
settings) are trained side by side for --updates updates on the run's final parts: one
against the average's pi_mix (the mix br_critic's deployment weighs; what deploy: average
deploys), one against the actor alone (lambda = 0). After each update it prints, for
each target, the exact value (mean over both seats) that the greedy responder on the
critic's Q gets against it, beside the exact best response's value: the target's
exploitability. A learned responder far below the exact one cannot tell the two targets
apart, and bin utilities computed from its Q reward whatever exploits the current
self-play opponent instead of what limits exploitability. The last line is one JSON object.
"""

import json

import torch
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel.runs import load_run
from armac_spiel.scheduler.br_critic import BRCritic
from games import infostate_table
from games.tree import compile_tree, tree_fits

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "A finished scheduler run directory.")
flags.DEFINE_integer("updates", 25, "Critic updates on the run's final parts.")
flags.DEFINE_integer("seed", 0, "Seed of the critics.")
flags.DEFINE_integer("every", 5, "Print every this many updates.")
flags.DEFINE_multi_string("set", [], "utility_computation overrides KEY=VALUE[,...] (br_*).")


def greedy_value(tree, mix: torch.Tensor, q: torch.Tensor, player: torch.Tensor) -> float:
  """Exact value, averaged over both seats, of the greedy responder on q against mix."""
  mask = tree.info_legal
  greedy = torch.nn.functional.one_hot(q.masked_fill(~mask, -torch.inf).argmax(-1),
                                       mask.shape[-1]).double()
  vals = []
  for mixer in (0, 1):
    table = torch.where((player == mixer)[:, None], mix, greedy)
    vals.append(float(tree.expected_returns(table)[1 - mixer]))
  return sum(vals) / 2


def main(argv):
  del argv
  torch.set_num_threads(1)
  learner = load_run(FLAGS.run_dir)
  ad = learner.scheduler
  if ad is None:
    raise app.UsageError("--run_dir: not a scheduler run (no scheduler in its checkpoint)")
  g = ad.game_string
  if not tree_fits(g):
    raise app.UsageError(f"--run_dir: {g} is beyond the compiled tree; no exact measure")
  tree, table = compile_tree(g), infostate_table(g)
  n = len(table)
  lams = {"mix": ad.average_lambda(learner), "actor": torch.zeros(n, 1, dtype=torch.float64)}
  targets = {k: ad.mixed_table(learner, lam)[0] for k, lam in lams.items()}
  exact = {k: float(tree.exploitability(t)) for k, t in targets.items()}

  def mix_fn_of(table):  # the critic's sampler is the tree's: rows are table rows
    return lambda x, mask, rows: table[rows]

  cfg = ad.suite.utility_computation
  if FLAGS.set:
    from armac_spiel.scheduler.config import SchedulerSuiteConfig
    suite = ad.suite.to_dict()
    suite["utility_computation"].update(config_lib.parse_sets(FLAGS.set))
    cfg = SchedulerSuiteConfig.from_dict(suite).utility_computation
  critics = {k: BRCritic(cfg, g, FLAGS.seed + i) for i, k in enumerate(targets)}
  x = tree.info_tensors
  rows = []
  for u in range(1, FLAGS.updates + 1):
    row = {"update": u}
    for k, c in critics.items():
      c.update(mix_fn_of(targets[k]))
      with torch.no_grad():
        q = c.net(x).double()
      row[f"learned_{k}"] = greedy_value(tree, targets[k].double(), q, table.player)
      row[f"exact_{k}"] = exact[k]
    rows.append(row)
    if u % FLAGS.every == 0 or u == FLAGS.updates:
      print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in row.items()), flush=True)
  print(json.dumps({"run_dir": FLAGS.run_dir, "game": g, "updates": FLAGS.updates,
                    "exact_mix": exact["mix"], "exact_actor": exact["actor"],
                    "learned_mix": rows[-1]["learned_mix"],
                    "learned_actor": rows[-1]["learned_actor"]}))


if __name__ == "__main__":
  flags.mark_flag_as_required("run_dir")
  app.run(main)
