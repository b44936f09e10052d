"""The config derived from the game (armac_spiel.config.derive_config) on every ladder rung:
a few epochs leave the average policy less exploitable than the uniform policy, and the run's
config.json names each derived field with its reason."""

import json
import os

import pytest

from armac_spiel import config as config_lib
from armac_spiel import evaluation, runs
from armac_spiel.armac import ARMAC
from games import ladder

EPOCHS = 8  # each rung's epochs, unless EPOCHS_OF says otherwise
# Early regret-matching policies are more exploitable than the uniform policy on the poker
# rungs, goofspiel_5 and liars_dice(numdice=1), and so is the average of the first few: at
# seed 3 the average passes the uniform's near epoch 20 on leduc and goofspiel_5, at epoch 11
# on leduc_5x2 and at epoch 6 on liars_dice (0.769 against 0.781).
EPOCHS_OF = {"goofspiel_5": 24, "leduc": 20, "leduc_5x2": 16, "liars_dice_1": 10}


@pytest.mark.parametrize("rung", ladder.LADDER, ids=lambda r: r.name)
def test_derived_defaults_beat_the_uniform_policy(rung):
  derived = config_lib.derive_config(rung.game)
  cfg = config_lib.ARMACConfig.from_dict({k: v.value for k, v in derived.items()})
  learner = ARMAC(rung.game, cfg, seed=3)
  for _ in range(EPOCHS_OF.get(rung.name, EPOCHS)):
    learner.step()
  uniform, _ = evaluation.fast_exploitability(rung.game, evaluation.uniform_table(rung.game))
  average, _ = evaluation.fast_exploitability(rung.game, learner.average_table())
  assert average < uniform, (rung.name, average, uniform)


def test_derived_fields_follow_the_game():
  goofspiel = config_lib.derive_config(ladder.rung("goofspiel_4").game)
  assert goofspiel["regret_fit"].value == "states" and goofspiel["sampler"].value == "tree"
  assert goofspiel["critic_prev_actions"].value == 1  # its nodes alias
  assert "critic_prev_actions" not in config_lib.derive_config("kuhn_poker")  # none alias
  beyond = config_lib.derive_config("liars_dice(numdice=2)")
  assert beyond["regret_fit"].value == "bootstrap" and beyond["sampler"].value == "pyspiel"
  config_lib.ARMACConfig.from_dict({k: v.value for k, v in beyond.items()})  # valid


def test_config_json_lists_the_derived_fields_with_reasons(tmp_path):
  game = ladder.rung("goofspiel_4").game
  spec = runs.resolve_spec("armac", game, 3, str(tmp_path), max_steps=1,
                           sets={"critic_steps": 2}, device="cpu", plot=False)
  runs.run(spec)
  with open(os.path.join(tmp_path, "config.json")) as f:
    derived = json.load(f)["derived"]
  assert derived["regret_fit"]["value"] == "states"
  assert "compiled tree" in derived["regret_fit"]["why"]
  assert derived["critic_prev_actions"]["value"] == 1
  assert all(isinstance(v["why"], str) and v["why"] for v in derived.values())
  assert "critic_steps" not in derived  # --set wins over the derivation, and says so
  assert json.load(open(os.path.join(tmp_path, "config.json")))["hparams"]["critic_steps"] == 2


def test_the_pyspiel_sampler_asked_for_takes_the_path_beyond_the_tree(tmp_path):
  spec = runs.resolve_spec("armac", ladder.rung("goofspiel_4").game, 3, str(tmp_path),
                           max_steps=1, sampler="pyspiel")
  assert spec.config.regret_fit == "bootstrap" and spec.config.critic_prev_actions == 1
  assert "pyspiel sampler was asked for" in spec.derived["regret_fit"]["why"]


def test_a_yaml_means_no_derivation(tmp_path):
  spec = runs.resolve_spec("armac", "leduc_poker", 3, str(tmp_path), max_steps=1)
  assert spec.derived is None and spec.config.critic_lr == 1e-3


def test_config_derived_leaves_the_tuned_yaml_out(tmp_path):
  """`--config=derived`: Leduc with the config derived from the game, not its tuned YAML."""
  spec = runs.resolve_spec("armac", "leduc_poker", 3, str(tmp_path), max_steps=1,
                           config_path=runs.spec.DERIVED_CONFIG)
  assert spec.config_file is None and spec.derived["regret_fit"]["value"] == "states"
  assert spec.config.episodes_per_epoch == spec.derived["episodes_per_epoch"]["value"]
