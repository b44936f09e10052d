"""Diagnostic: what limits ARMAC's average policy, the critic or W's fit?

  python -m experiments.diagnostics.diagnose_regret --game_name=leduc_poker --critic=exact \
      --regret_fit=rows --epochs=300
  python -m experiments.diagnostics.diagnose_regret --game_name=leduc_poker --tabular --epochs=600

ARMAC mode trains ARMAC (per-game config, `--regret_fit` overriding it). With
`--critic=exact` the regret targets use the exact action values Q^{pi^j}(h, a) of each
policy j, computed on the compiled tree, in place of the learned critic q^j (the critic is
not trained). Every `--every` epochs it prints the exploitability of the actor, of the
current policy, of the exact reach-weighted average of the current policies (is the actor
the limit?), and how far RM(W) is from regret matching on the replay's per-information-
state mean targets, the minimiser of W's loss (is W's fit the limit?).

`--tabular` runs the same sampling scheme with no networks at all: per epoch t, episodes in
which player t mod 2 plays uniformly and the opponent plays pi^t, regret targets
Q^t(h, a) - V^t(h) from the exact Q, summed per information state with linear weights;
pi^{t+1} is regret matching on the sums. It is the floor that ARMAC's sampling allows.
Small games only (compiled tree).
"""

import time

import numpy as np
import torch
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel import evaluation, runs
from armac_spiel.armac import ARMAC
from armac_spiel.config import REGRET_FITS
from armac_spiel.networks import regret_matching
from games import load_game
from games.tree import DECISION, TreeSampler, compile_tree, exact_q

FLAGS = flags.FLAGS
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string (tree must fit).")
flags.DEFINE_integer("epochs", 300, "Epochs to train.")
flags.DEFINE_integer("every", 60, "Epochs between diagnostics.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_enum("critic", "learned", ["learned", "exact"], "Critic used in the targets.")
flags.DEFINE_enum("regret_fit", None, list(REGRET_FITS), "Overrides the config's regret_fit.")
flags.DEFINE_string("config", None, "YAML config (default: the game's tuned config).")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...].")
flags.DEFINE_bool("tabular", False, "Tabular sampled-CFR floor instead of ARMAC.")
flags.DEFINE_enum("tabular_regrets", "linear", ["linear", "dcfr", "rmplus"],
                  "Tabular cumulative regrets: linear (LCFR weights t+1), dcfr (positive sums "
                  "discounted by t^a/(t^a+1), negative by t^b/(t^b+1); Brown & Sandholm "
                  "2019) or rmplus (unweighted sums clipped at 0, RM+).")
flags.DEFINE_float("dcfr_alpha", 1.5, "DCFR alpha (--tabular_regrets=dcfr).")
flags.DEFINE_float("dcfr_beta", 0.0, "DCFR beta (--tabular_regrets=dcfr).")
flags.DEFINE_float("average_power", 1.0, "Tabular average weights (t+1)^power (1: linear, "
                   "2: quadratic; DCFR's gamma).")
flags.DEFINE_integer("tabular_episodes", 1536, "Learner episodes per tabular epoch (ARMAC's "
                     "tuned configs: 12 of 16 groups of 2048 episodes replay past policies).")


class _ReachAverage:
  """Exact average of a sequence of tables, each weighted by its own player's reach."""

  def __init__(self, tree):
    self.tree = tree
    self.sum = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
    dec = tree.kind == DECISION
    self._nodes, self._sid = dec.nonzero().squeeze(1), tree.infostate[dec]

  def add(self, probs: torch.Tensor, weight: float) -> None:
    r = self.tree.reach(probs)[self._nodes]
    own = r.gather(1, self.tree.player[self._nodes].unsqueeze(1)).squeeze(1)
    reach = torch.zeros(self.tree.num_infostates, dtype=torch.float64)
    reach[self._sid] = own  # perfect recall: every node of a state has the same own reach
    self.sum += weight * reach[:, None] * probs.double()

  def table(self) -> torch.Tensor:
    z = self.sum.sum(1, keepdim=True)
    return torch.where(z > 0, self.sum / z.clamp_min(1e-300), self.tree.uniform_policy())


class ExactCritic:
  """ARMAC's TargetCritic: the exact Q^{pi^j}(h, a) of each policy j on the compiled tree.

  At each epoch t it stores the exact Q table of the current policy pi^t (player 0's values,
  one head: two-player zero-sum games), so that later epochs replaying policy j read Q^j."""

  def __init__(self):
    self.q_tables: dict[int, torch.Tensor] = {}

  def values(self, learner: ARMAC, traj, policy_epochs: torch.Tensor) -> torch.Tensor:
    q = exact_q(learner.tree, learner.current_policy().table()).float()
    self.q_tables[learner.epoch] = torch.cat([q, torch.zeros(1, q.shape[1])])  # -1: padding
    b, t = traj.node.shape
    nodes = traj.node.reshape(len(policy_epochs), -1)
    return torch.stack([self.q_tables[int(e)][nodes[k]]
                        for k, e in enumerate(policy_epochs)]).view(b, t, -1)


def run_armac(game: str) -> None:
  spec = runs.resolve_spec("armac", game, FLAGS.seed, "/dev/null", config_path=FLAGS.config,
                           sets=config_lib.parse_sets(FLAGS.set), max_steps=FLAGS.epochs)
  cfg = spec.config.replace(sampler="tree")
  if FLAGS.regret_fit:
    cfg = cfg.replace(regret_fit=FLAGS.regret_fit, regret_discount=(
        cfg.regret_discount if FLAGS.regret_fit == "states" else "none"))
  learner = ARMAC(game, cfg, FLAGS.seed,
                  target_critic=ExactCritic() if FLAGS.critic == "exact" else None)
  tree = learner.tree  # the tree sampler gives ids (unique_inputs is on)
  avg = _ReachAverage(tree)
  train_s = 0.0
  for e in range(1, FLAGS.epochs + 1):
    weight = (learner.epoch + 1.0) if cfg.average_weighting == "linear" else 1.0
    avg.add(learner.current_policy().table(), weight)
    t0 = time.perf_counter()
    learner.step()
    train_s += time.perf_counter() - t0
    if e % FLAGS.every:
      continue
    seen, y, mask = learner.state_regret_targets()
    with torch.no_grad():
      w_net = learner.regret(tree.info_tensors[seen])
    l1 = (regret_matching(w_net, mask) - regret_matching(y, mask)).abs().sum(1).mean()
    sid_p, p_mean, _ = learner.state_policy_targets()
    replay_avg = tree.uniform_policy().float()
    replay_avg[sid_p] = p_mean
    print(f"epoch {e} train_s {train_s:.0f}: exploitability actor "
          f"{evaluation.exploitability(game, learner.average_policy().table()):.4f}, "
          f"replay mean policy {evaluation.exploitability(game, replay_avg):.4f}, "
          f"current {evaluation.exploitability(game, learner.current_policy().table()):.4f}, "
          f"exact average of the current policies "
          f"{evaluation.exploitability(game, avg.table()):.4f}; "
          f"RM(W) vs RM(replay means): mean L1 {l1:.3f} over {len(seen)} states",
          flush=True)


def run_tabular(game: str) -> None:
  tree = compile_tree(game)
  sampler = TreeSampler(load_game(game), FLAGS.seed)
  legal = tree.info_legal.double()
  regrets = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
  dec = tree.kind == DECISION
  owner = torch.zeros(tree.num_infostates, dtype=torch.long)
  owner[tree.infostate[dec]] = tree.player[dec]  # the player acting at each state
  avg = _ReachAverage(tree)
  t0 = time.perf_counter()
  for t in range(FLAGS.epochs):
    pi = regret_matching(regrets, tree.info_legal)
    avg.add(pi, (t + 1.0) ** FLAGS.average_power)
    q = exact_q(tree, pi)  # player 0's action values
    learner, pi32 = t % 2, pi.float()

    def policy(batch):
      uniform = batch.legal_mask.float() / batch.legal_mask.sum(1, keepdim=True)
      return torch.where((batch.player == learner).unsqueeze(1), uniform,
                         pi32[batch.infostate])

    traj = sampler.sample(policy, FLAGS.tabular_episodes)
    nodes = traj.node[traj.valid & (traj.player == learner)]
    q_i = q[nodes] * (1 - 2 * learner)
    sid = tree.infostate[nodes]
    adv = (q_i - (pi[sid] * q_i).sum(1, keepdim=True)) * legal[sid]
    if FLAGS.tabular_regrets == "linear":
      regrets.index_add_(0, sid, (t + 1.0) * adv)
    else:
      # The learner's n-th update (alternating: n = t // 2 + 1) discounts its own sums.
      mine = (owner == learner)[:, None]
      if FLAGS.tabular_regrets == "dcfr" and t >= 2:
        n = t // 2
        pos = n ** FLAGS.dcfr_alpha / (n ** FLAGS.dcfr_alpha + 1.0)
        neg = n ** FLAGS.dcfr_beta / (n ** FLAGS.dcfr_beta + 1.0)
        regrets = torch.where(mine, regrets * torch.where(regrets > 0, pos, neg), regrets)
      # Per-epoch sums are visit counts times the counterfactual regret: divide by the
      # episodes so that discounting and clipping see an epoch-independent scale.
      regrets.index_add_(0, sid, adv / FLAGS.tabular_episodes)
      if FLAGS.tabular_regrets == "rmplus":
        regrets = torch.where(mine, regrets.clamp_min(0.0), regrets)
    if (t + 1) % FLAGS.every == 0:
      print(f"epoch {t + 1} ({time.perf_counter() - t0:.0f} s): exploitability average "
            f"{evaluation.exploitability(game, avg.table()):.4f}, current "
            f"{evaluation.exploitability(game, pi):.4f}", flush=True)


def main(argv):
  del argv
  torch.set_num_threads(1)
  np.random.seed(FLAGS.seed)
  (run_tabular if FLAGS.tabular else run_armac)(FLAGS.game_name)


if __name__ == "__main__":
  app.run(main)
