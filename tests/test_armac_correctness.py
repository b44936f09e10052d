"""Correctness on Kuhn poker: ARMAC's average policy approaches the Nash equilibrium.

CI-sized: 120 epochs (about a minute on one core) with the tuned Kuhn config and a fixed
seed. Exploitability is exact (OpenSpiel's evaluator) and Kuhn's game value is -1/18.
"""

import os

from armac_spiel import config as config_lib
from armac_spiel import evaluation
from armac_spiel.armac import ARMAC

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kuhn_average_policy_converges():
  cfg = config_lib.from_dict(
      config_lib.load_yaml(os.path.join(REPO, "experiments/configs/kuhn_poker.yaml")))
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
