"""Correctness on Kuhn poker: ARMAC's average policy approaches the Nash equilibrium.

CI-sized: 120 epochs (about a minute on one core) with the tuned Kuhn config and a fixed
seed. Exploitability is exact (OpenSpiel's evaluator) and Kuhn's game value is -1/18.
"""

import pytest
import torch

from armac_spiel import config as config_lib
from armac_spiel import evaluation
from armac_spiel.armac import ARMAC
from armac_spiel.runs.spec import resolve_spec


def test_kuhn_average_policy_converges():
  cfg = resolve_spec("armac", "kuhn_poker", 0, "/dev/null", max_steps=120).config  # the tuned Kuhn YAML
  learner = ARMAC("kuhn_poker", cfg, seed=0)
  first = evaluation.exploitability("kuhn_poker", learner.average_policy().table())
  for _ in range(120):
    learner.step()
  table = learner.average_policy().table()
  expl = evaluation.exploitability("kuhn_poker", table)
  value = evaluation.expected_returns("kuhn_poker", [table, table])[0]
  assert first > 0.4  # starts near uniform (0.4583)
  assert expl < 0.05, expl
  assert abs(value - (-1 / 18)) < 0.02, value


@pytest.mark.parametrize("trace", ["tree_backup", "retrace"])
def test_critic_targets_match_a_per_episode_reference(trace):
  """The batched critic loss equals a step-by-step recursion over each episode:
  G_t = V(h_{t+1}) + lambda c_{t+1} (G_{t+1} - q(h_{t+1}, a_{t+1})), G = return at the end,
  c = pi(a) (Tree Backup) or min(1, pi(a) / mu(a)) (Retrace, mu the behaviour)."""
  from armac_spiel.networks import regret_matching
  cfg = config_lib.ARMACConfig(episodes_per_epoch=64, groups_per_epoch=4, current_groups=1,
                               critic_trace=trace, tb_lambda=0.7, sampler="pyspiel",
                               explore_eps=0.5)
  a = ARMAC("leduc_poker", cfg, seed=0)
  a.step()
  a.step()
  d = a.critic_fit.replay.filled()
  assert (d.mu is not None) == (trace == "retrace")
  with torch.no_grad():
    loss = float(a.critic_fit.loss(d))
    errs = []
    for e in range(d.valid.shape[0]):
      steps = d.valid[e].nonzero().squeeze(1).tolist()
      q = a.critic(d.history[e]).double()        # (T, A), one head (zero-sum)
      pi = regret_matching(a.regret(d.info[e]), d.mask[e]).double()
      ret = float(d.returns[e, 0])
      g_next = ret
      for t in reversed(steps):
        errs.append((float(q[t, d.action[e, t]]) - g_next) ** 2)
        a_t = int(d.action[e, t])
        c = float(pi[t, a_t])
        if trace == "retrace":
          c = min(1.0, c / float(d.mu[e, t]))
        g_next = float((pi[t] * q[t]).sum()) + 0.7 * c * (g_next - float(q[t, a_t]))
    ref = sum(errs) / len(errs)
  assert loss == pytest.approx(ref, rel=1e-4)
