"""The one config mechanism (armac_spiel.params): building, one error form for every config,
recording resolved with the spec, and bad input through the train CLI."""

import os
import subprocess
import sys

import pytest

from armac_spiel import baselines, config, recording, runs
from armac_spiel.params import ConfigError
from armac_spiel.runs import spec as spec_lib
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from tests.conftest import REPO, TINY, as_set_flag

FORM = r"config field '{}' = .*: must be "


@pytest.mark.parametrize("build, field", [
    (lambda: config.from_dict({"critic_lr": -1.0}), "critic_lr"),
    (lambda: config.from_dict({"critic_hidden": [16, "x"]}), "critic_hidden"),
    (lambda: config.from_dict({"alternating_updates": 1}), "alternating_updates"),
    (lambda: SchedulerSuiteConfig.from_dict({"meta_regret": {"decay": 1.5}}),
     "meta_regret.decay"),
    (lambda: SchedulerSuiteConfig.from_dict({"scheduler": {"regularization": {"beta_l2": "x"}}}),
     "scheduler.regularization.beta_l2"),
    (lambda: baselines.make_baseline("nfsp", "kuhn_poker", 0, batch_size=0), "batch_size"),
    (lambda: baselines.make_baseline("es_mccfr", "kuhn_poker", 0, average_type="half"),
     "average_type"),
    (lambda: recording.RecorderConfig("rep", fraction=1.5), "fraction"),
    (lambda: recording.RecorderConfig("rep", episodes_per_file=0), "episodes_per_file")])
def test_every_config_error_has_one_form(build, field):
  with pytest.raises(ConfigError, match=FORM.format(field.replace(".", r"\."))) as e:
    build()
  assert e.value.key == field


def test_unknown_keys_are_named_with_the_closest_known_one():
  with pytest.raises(ConfigError, match=r"'critic_hiden' = \[8\].*did you mean 'critic_hidden'"):
    config.from_dict({"critic_hiden": [8]})
  with pytest.raises(ConfigError, match=r"^f\.yaml: config field 'meta_regret\.max_state' = 3"):
    SchedulerSuiteConfig.from_dict({"meta_regret": {"max_state": 3}}, where="f.yaml")


def test_values_are_coerced_to_their_field_types_and_round_trip():
  cfg = config.from_dict({"critic_lr": "1e-4", "critic_hidden": [8, 8], "regret_lr": 1})
  assert cfg.critic_lr == 1e-4 and cfg.critic_hidden == (8, 8)
  assert isinstance(cfg.regret_lr, float) and cfg.regret_lr == 1.0
  assert cfg.to_dict()["critic_hidden"] == [8, 8]
  assert config.from_dict(cfg.to_dict()) == cfg
  suite = SchedulerSuiteConfig.from_dict({"scheduler": {"hidden": [4]}})
  assert suite.scheduler.hidden == (4,) and SchedulerSuiteConfig.from_dict(suite.to_dict()) == suite


def test_the_scheduler_mode_is_resolved_once(tmp_path):
  path = tmp_path / "c.yaml"
  path.write_text("use_scheduler: true\npolicy_mixer: {discrete: false}\n")
  spec = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), config_path=str(path),
                           sets=dict(TINY), max_steps=1)
  assert spec.config.scheduler_mode == "continuous"
  assert SchedulerSuiteConfig.from_dict(spec.scheduler).mode == "continuous"
  off = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), config_path=str(path),
                          sets=dict(TINY), max_steps=1, scheduler="off")
  assert off.config.scheduler_mode == "off" and off.scheduler is None


def test_split_config_separates_the_scheduler_sections():
  armac, suite = spec_lib.split_config({"critic_lr": 0.1, "meta_regret": {"decay": 0.5}})
  assert armac == {"critic_lr": 0.1} and suite.meta_regret.decay == 0.5
  assert spec_lib.split_config({"critic_lr": 0.1}) == ({"critic_lr": 0.1}, None)


def test_recording_is_resolved_with_the_spec(tmp_path):
  rep = tmp_path / "rep"
  path = tmp_path / "c.yaml"
  path.write_text(f"deterministic_replay:\n  record: true\n  replay_dir: {rep}\n"
                  "  tolerance: 1e-5\n")
  spec = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), config_path=str(path),
                           sets=dict(TINY), max_steps=1, record={"fraction": 0.5})
  assert spec.record == recording.RecorderConfig(str(rep), fraction=0.5, tolerance=1e-5)
  flag = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"),
                           config_path=str(path), sets=dict(TINY), max_steps=1,
                           record={"out_dir": str(tmp_path / "flag")})
  assert flag.record.out_dir == str(tmp_path / "flag") and flag.record.tolerance == 1e-5
  assert runs.RunSpec.from_dict(flag.to_dict()) == flag  # as config.json gives it back
  with pytest.raises(ConfigError, match="--replay_.*'fraction' = 2.0"):
    runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), config_path=str(path),
                      sets=dict(TINY), max_steps=1, record={"fraction": 2.0})
  with pytest.raises(ConfigError, match="--record_replay: applies to ARMAC only"):
    runs.resolve_spec("cfr_plus", "kuhn_poker", 0, str(tmp_path / "r"), max_steps=1,
                      record={"out_dir": str(rep)})
  plain = runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), sets=dict(TINY),
                            max_steps=1, record={"out_dir": None, "fraction": 1.0})
  assert plain.record is None


def test_a_bad_default_yaml_is_named(tmp_path, monkeypatch):
  (tmp_path / "kuhn_poker.yaml").write_text("critic_lr: [1, 2\n")
  monkeypatch.setattr(spec_lib, "CONFIG_DIR", str(tmp_path))
  with pytest.raises(ConfigError, match=r"the default config .*kuhn_poker\.yaml \(--config "
                                        r"picks another\): cannot read YAML"):
    runs.resolve_spec("armac", "kuhn_poker", 0, str(tmp_path / "r"), max_steps=1)


def _train(tmp_path, *args):
  env = {**os.environ, "PYTHONPATH": REPO}
  return subprocess.run([sys.executable, "-m", "experiments.train", "--game_name=kuhn_poker",
                         "--device=cpu", "--noprogress", "--noplot",
                         f"--out_dir={tmp_path / 'run'}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def _error_line(r) -> str:
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, r.stderr[-3000:]
  return lines[0]


def test_cli_a_diverging_learning_rate_is_a_clear_error(tmp_path):
  r = _train(tmp_path, "--max_epochs=3", f"--set={as_set_flag(TINY)},critic_lr=1e30")
  assert r.returncode == 2, r.stderr[-3000:]
  line = _error_line(r)
  assert "critic loss is nan at epoch 0" in line and "lower critic_lr" in line


def test_cli_an_unimportable_learner_module_names_the_flag(tmp_path):
  r = _train(tmp_path, "--max_epochs=1", "--learner_module=nope_mod")
  assert r.returncode == 2
  line = _error_line(r)
  assert "--learner_module='nope_mod'" in line and "No module named 'nope_mod'" in line


def test_cli_a_yaml_syntax_error_names_the_file(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text("critic_lr: 0.001\nactor_hidden: [64, 64\n")
  r = _train(tmp_path, "--max_epochs=1", f"--config={bad}")
  assert r.returncode == 2
  assert f"error: --config={bad}: cannot read YAML" in r.stderr and "Traceback" not in r.stderr
