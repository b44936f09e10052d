"""Shared fixtures; also puts the repository on sys.path and keeps torch to one thread."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# CI has 2 cores; tiny networks gain nothing from intra-op threads.
torch.set_num_threads(1)

# A small, fast ARMAC configuration for tests (fields of armac_spiel.config.ARMACConfig).
TINY_ARMAC = dict(critic_hidden=(32,), regret_hidden=(32,), actor_hidden=(32,),
                  episodes_per_epoch=128, groups_per_epoch=4, current_groups=1,
                  critic_replay_episodes=1024, critic_batch_episodes=64, critic_steps=4,
                  regret_replay=20000, regret_batch=256, regret_steps=4,
                  actor_replay=20000, actor_batch=256, actor_steps=4)


@pytest.fixture(scope="session")
def tiny_armac() -> dict:
  return dict(TINY_ARMAC)


@pytest.fixture(scope="session")
def kuhn_armac_run(tmp_path_factory) -> str:
  """A finished 12-epoch ARMAC run directory on Kuhn (tiny networks)."""
  from armac_spiel import runs
  out = str(tmp_path_factory.mktemp("kuhn_armac_run"))
  empty = os.path.join(out, "..", "empty.yaml")
  with open(empty, "w") as f:
    f.write("eval_every: 4\n")
  runs.run(runs.resolve_spec("armac", "kuhn_poker", 3, out, config_path=empty,
                             sets={**TINY_ARMAC, "max_epochs": 12}, device="cpu",
                             plot=False))
  return out
