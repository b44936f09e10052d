"""Shared constants and fixtures; also puts the repository on sys.path and keeps torch to one
thread. Tests import the constants: `from tests.conftest import REPO, TINY`."""

import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# CI has 2 cores; tiny networks gain nothing from intra-op threads.
torch.set_num_threads(1)

# The tests' tiny ARMAC config (fields of armac_spiel.config.ARMACConfig); a test that needs
# another value overrides it: dict(TINY, regret_fit="rows").
TINY = dict(critic_hidden=(16,), regret_hidden=(16,), actor_hidden=(16,),
            episodes_per_epoch=64, groups_per_epoch=4, current_groups=1, critic_steps=2,
            regret_steps=2, actor_steps=2, critic_batch_episodes=32, regret_batch=64,
            actor_batch=64, max_snapshots=4, eval_every=2)


def as_yaml(cfg: dict) -> str:
  """A config dict as YAML lines (tuples as lists)."""
  return "".join(f"{k}: {list(v) if isinstance(v, tuple) else v}\n" for k, v in cfg.items())


def as_set_flag(cfg: dict) -> str:
  """A config dict as the value of experiments.train's --set (KEY=VALUE,...)."""
  return ",".join(f"{k}={list(v) if isinstance(v, tuple) else v}".replace(" ", "")
                  for k, v in cfg.items())


@pytest.fixture(scope="session")
def kuhn_armac_run(tmp_path_factory) -> str:
  """A finished 12-epoch ARMAC run directory on Kuhn (tiny networks)."""
  from armac_spiel import runs
  out = str(tmp_path_factory.mktemp("kuhn_armac_run"))
  empty = os.path.join(out, "..", "empty.yaml")
  with open(empty, "w") as f:
    f.write("eval_every: 4\n")
  runs.run(runs.resolve_spec("armac", "kuhn_poker", 3, out, config_path=empty,
                             sets={**TINY, "eval_every": 4, "max_epochs": 12}, device="cpu",
                             plot=False))
  return out
