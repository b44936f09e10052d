"""critic_prev_actions: the critic's history input tells apart every decision node."""

import torch

from armac_spiel import config as config_lib
from armac_spiel.armac import ARMAC
from armac_spiel.records import episode_prev_actions, prev_actions_onehot
from games import ladder
from games.tree import DECISION

TINY = dict(critic_hidden=(16,), regret_hidden=(16,), actor_hidden=(16,),
            episodes_per_epoch=64, groups_per_epoch=4, current_groups=1, critic_steps=2,
            regret_steps=2, actor_steps=2, critic_batch_episodes=32, regret_batch=64,
            actor_batch=64, sampler="tree")
GOOFSPIEL = ladder.rung("goofspiel_4").game


def _distinct_decision_inputs(learner):
  tree = learner.tree
  dec = (tree.kind == DECISION).nonzero().squeeze(1)
  return len(dec), len(torch.unique(learner.critic_node_inputs(dec), dim=0))


def test_turn_based_goofspiel_aliases_nodes_without_previous_actions():
  nodes, distinct = _distinct_decision_inputs(
      ARMAC(GOOFSPIEL, config_lib.ARMACConfig(**TINY), seed=0))
  assert distinct < nodes  # the pending action of the first mover is in nobody's view


def test_previous_action_tells_apart_every_decision_node():
  learner = ARMAC(GOOFSPIEL, config_lib.ARMACConfig(**TINY, critic_prev_actions=1), seed=0)
  nodes, distinct = _distinct_decision_inputs(learner)
  assert distinct == nodes


def test_tree_table_matches_the_encoding_of_sampled_episodes():
  learner = ARMAC(GOOFSPIEL, config_lib.ARMACConfig(**TINY, critic_prev_actions=2), seed=1)
  traj, _ = learner.sample_episodes(learner.draw.slots(learner.epoch))
  from_episodes = learner.critic_inputs(traj)[traj.valid]
  from_table = learner.critic_node_inputs(traj.node[traj.valid])
  assert from_episodes.shape[-1] == learner.sgame.history_size + 2 * learner.sgame.num_actions
  assert torch.equal(from_episodes, from_table)
  learner.step()  # the critic trains on the wider input
  assert learner.critic[0].in_features == from_table.shape[-1]


def test_pyspiel_sampler_trains_on_the_wider_input():
  cfg = config_lib.ARMACConfig(**{**TINY, "sampler": "pyspiel"}, critic_prev_actions=1)
  learner = ARMAC(GOOFSPIEL, cfg, seed=2)
  learner.step()
  assert learner.critic[0].in_features == (learner.sgame.history_size
                                           + learner.sgame.num_actions)


def test_prev_actions_onehot_shifts_each_episode():
  action = torch.tensor([[2, 0, 1, -1], [1, 1, -1, -1]])
  out = prev_actions_onehot(episode_prev_actions(action, 2), 3).view(2, 4, 2, 3)
  assert out[0, 0].sum() == 0
  assert out[0, 1, 0].tolist() == [0, 0, 1] and out[0, 1, 1].sum() == 0
  assert out[0, 2, 0].tolist() == [1, 0, 0] and out[0, 2, 1].tolist() == [0, 0, 1]
  assert out[1, 3, 0].sum() == 0 and out[1, 3, 1].tolist() == [0, 1, 0]


def test_default_keeps_the_history_encoding():
  learner = ARMAC("kuhn_poker", config_lib.ARMACConfig(**TINY), seed=0)
  assert learner.critic[0].in_features == learner.sgame.history_size


def test_negative_value_is_refused():
  try:
    config_lib.ARMACConfig(critic_prev_actions=-1)
  except config_lib.ConfigError as e:
    assert "critic_prev_actions" in str(e)
  else:
    raise AssertionError("critic_prev_actions=-1 was accepted")
