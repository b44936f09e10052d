"""Diagnostic: how far the learned critic is from the exact Q of the current policy.

  python -m experiments.diagnostics.diagnose_critic --game_name=leduc_poker --epochs=100 \
      --every=25 [--seed=3] [--set=critic_trace=retrace]

Trains ARMAC (per-game config) and, every `--every` epochs, computes the exact action
values Q^pi(h, a) of the current regret-matching policy on the compiled tree and the
critic's RMSE against them, over all decision nodes and weighted by the nodes' reach
under the current policy. Small games only (compiled tree).
"""

import torch
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel import evaluation, runs
from armac_spiel.armac import ARMAC
from armac_spiel.records import TreeTables
from games.tree import DECISION, compile_tree, exact_q

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (tree must fit).")
flags.DEFINE_integer("epochs", 100, "Epochs to train.")
flags.DEFINE_integer("every", 25, "Epochs between diagnostics.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...].")


def main(argv):
  del argv
  torch.set_num_threads(1)
  spec = runs.resolve_spec("armac", FLAGS.game_name, FLAGS.seed, "/dev/null", max_steps=1,
                           sets=config_lib.parse_sets(FLAGS.set))
  learner = ARMAC(FLAGS.game_name, spec.config, FLAGS.seed)
  tree = compile_tree(FLAGS.game_name)
  dec = (tree.kind == DECISION).nonzero().squeeze(1)
  mask = tree.legal_mask[dec].double()
  inputs = TreeTables(tree, "cpu", learner.cfg.critic_prev_actions).history[dec]
  for e in range(1, FLAGS.epochs + 1):
    learner.step()
    if e % FLAGS.every:
      continue
    cur = learner.current_policy().table()
    q = exact_q(tree, cur)[dec]
    reach = tree.reach(cur).prod(1)[dec]
    with torch.no_grad():
      pred = learner.critic(inputs.to(learner.device)).double().cpu()
    if learner.zero_sum2:
      err = ((pred - q) ** 2 * mask).sum(1) / mask.sum(1)
    else:
      raise SystemExit("the diagnostic covers two-player zero-sum games")
    expl = evaluation.exploitability(FLAGS.game_name, learner.average_policy().table())
    print(f"epoch {e}: critic RMSE {err.mean().sqrt():.3f} (all nodes), "
          f"{((err * reach).sum() / reach.sum()).sqrt():.3f} (reach-weighted); "
          f"average-policy exploitability {expl:.4f}", flush=True)


if __name__ == "__main__":
  app.run(main)
