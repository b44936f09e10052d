"""Glue between the training config and the scheduler package (filled in by the scheduler
integration)."""

from armac_spiel.config import ConfigError

SCHEDULER_SECTIONS = ("use_scheduler", "scheduler", "policy_mixer", "meta_regret",
                      "state_keying", "utility_computation", "deterministic_replay")


def split_config(raw: dict, where: str = "config"):
  """Splits a YAML mapping into ARMAC keys and the seed spec's scheduler sections."""
  armac = {k: v for k, v in raw.items() if k not in SCHEDULER_SECTIONS}
  sections = {k: v for k, v in raw.items() if k in SCHEDULER_SECTIONS}
  if not sections:
    return armac, None
  from armac_spiel.scheduler.config import SchedulerSuiteConfig
  try:
    return armac, SchedulerSuiteConfig.from_dict(sections)
  except ValueError as e:
    raise ConfigError(f"{where}: {e}") from e


def scheduler_factory(suite):
  return None
