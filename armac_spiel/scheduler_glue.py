"""The scheduler suite's YAML sections and the deterministic_replay settings.

`split_config` separates a YAML mapping's scheduler sections from ARMAC's keys;
`replay_settings`, `write_replay_tolerance` and `read_replay_tolerance` resolve and keep
the deterministic_replay section's directory and tolerance. The scheduler itself:
armac_spiel.scheduler (`make_scheduler`).
"""

from __future__ import annotations

import os

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
  except ConfigError as e:
    raise ConfigError(f"{where}: {e}") from e


def replay_settings(suite, flag_dir: str | None) -> tuple[str | None, float]:
  """(replay directory or None, verification tolerance): --record_replay=DIR wins; else the
  deterministic_replay section records into replay_dir when its `record` is true."""
  from armac_spiel.scheduler.config import ReplayConfig
  r = suite.deterministic_replay if suite is not None else ReplayConfig()
  return (flag_dir or (r.replay_dir if r.record else None)), r.tolerance


REPLAY_TOLERANCE_FILE = "tolerance.json"


def write_replay_tolerance(replay_dir: str, tolerance: float) -> None:
  """Records deterministic_replay.tolerance in the replay directory."""
  import json
  from armac_spiel.atomic import atomic_write_text
  os.makedirs(replay_dir, exist_ok=True)
  atomic_write_text(os.path.join(replay_dir, REPLAY_TOLERANCE_FILE),
                    json.dumps({"tolerance": float(tolerance)}))


def read_replay_tolerance(replay_dir: str, default: float = 1e-6) -> float:
  """The tolerance written by write_replay_tolerance (JSON), else `default`."""
  import json
  path = os.path.join(replay_dir, REPLAY_TOLERANCE_FILE)
  if not os.path.exists(path):
    return default
  try:
    with open(path) as f:
      return float(json.load(f)["tolerance"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"{path}: unreadable replay tolerance file: {e}") from None
