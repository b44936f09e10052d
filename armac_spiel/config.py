"""ARMAC's hyper-parameters: `ARMACConfig`, a `Params` (armac_spiel.params), loadable from YAML.

Per-game tuned defaults live in experiments/configs/<game>.yaml. Precedence: dataclass
defaults < YAML file < command-line flags (resolved by armac_spiel.runs.resolve_spec). The
resolved config is written to each run directory as config.json.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional

import yaml

from armac_spiel.params import ConfigError, Params  # ConfigError: re-exported for callers
from games import SAMPLER_BACKENDS

WEIGHTINGS = ("uniform", "linear")
LR_DECAYS = ("none", "sqrt", "linear")
SCHEDULER_MODES = ("off", "continuous", "discrete")
POLICY_DRAWS = ("uniform", "balanced", "current")
REGRET_FITS = ("rows", "states", "bootstrap")  # bootstrap: regret_fit only
ACTOR_FITS = ("rows", "states")
CRITIC_TRACES = ("tree_backup", "retrace")
REGRET_DISCOUNTS = ("none", "dcfr")


@dataclasses.dataclass(frozen=True)
class ARMACConfig(Params):
  """Hyper-parameters of one ARMAC run. The main fields: see README 'Configuration'."""
  # Networks.
  critic_hidden: tuple[int, ...] = (128, 128)
  regret_hidden: tuple[int, ...] = (128, 128)
  actor_hidden: tuple[int, ...] = (128, 128)
  critic_lr: float = 1e-3
  regret_lr: float = 1e-3
  actor_lr: float = 1e-3
  lr_decay: str = "sqrt"             # none | sqrt | linear, for W and the actor
  lr_decay_epochs: float = 20.0
  min_lr: float = 1e-5
  # Sampling.
  episodes_per_epoch: int = 1024
  groups_per_epoch: int = 16         # distinct past policies j per epoch (episodes split evenly)
  current_groups: int = 4            # groups that play the current policy (mean-policy data)
  explore_eps: float = 0.1           # epsilon-uniform exploration of the learning player
  alternating_updates: bool = True   # policy j's regrets are for player j mod N only (as CFR's
                                     # alternating updates); False: both players every epoch
  sampler: str = "auto"
  # Policy buffer (past regret nets and critics).
  max_snapshots: int = 256
  snapshot_weighting: str = "linear"  # CFR weight of policy j in W's mean: uniform | linear
  policy_draw: str = "balanced"       # uniform (ARMAC.md) | balanced (see past_policies.PolicyDraw)
  # Critic: Tree Backup (or Retrace) towards the current policy.
  tb_lambda: float = 1.0
  critic_trace: str = "tree_backup"  # trace c = lambda * pi(a) | retrace: lambda * min(1, pi/mu)
  critic_target_tau: float = 1.0     # Polyak rate of the critic's target network, whose
                                     # values bootstrap the trace targets: after each critic
                                     # step theta' <- (1 - tau) theta' + tau theta; 1: no
                                     # target network (the live critic's values)
  critic_prev_actions: int = 0       # K > 0: the one-hots of the last K decision actions join
                                     # the critic's history input (records.critic_history):
                                     # all players' information-state tensors do not tell
                                     # apart the nodes of a turn-based simultaneous-move game
                                     # (the first mover's action is in no player's view);
                                     # K = players - 1 does; 0: off
  critic_replay_episodes: int = 16384
  critic_steps: int = 8
  critic_batch_episodes: int = 512
  # Regret network W.
  regret_replay: int = 1_000_000     # reservoir rows (regret_fit=rows; states keeps sums)
  regret_steps: int = 8
  regret_batch: int = 2048
  regret_scale_sqrt_t: bool = True   # regress on sqrt(t+1) * targets (see fits.RowsFit.loss)
  regret_fit: str = "rows"           # rows: SGD on replay rows | states: full-batch on the
                                     # replay's per-information-state means (see ARMAC) |
                                     # bootstrap: W carries the cumulative regret sums
                                     # (armac_spiel/bootstrap.py)
  regret_lstsq: int = 0              # states: 0 off; N > 0: N Adam steps (instead of
                                     # regret_steps), then W's last layer is solved exactly
                                     # (ridge least squares on the hidden features of the
                                     # seen states; fits.StatesFit.train)
  bootstrap_memory: int = 200_000    # distinct encodings W is re-fitted on (bootstrap)
  regret_discount: str = "none"      # none: CFR weights (snapshot_weighting) | dcfr: DCFR's
                                     # discounted sums (needs regret_fit=states, policy_draw=
                                     # current; see fits.StatesFit.fold)
  regret_plus: bool = False          # clip the cumulative regrets at 0 each epoch (RM+, as
                                     # CFR+ / DCFR+; regret_fit=bootstrap only)
  dcfr_alpha: float = 1.5            # DCFR: positive sums *= n^alpha / (n^alpha + 1)
  dcfr_beta: float = 0.0             # DCFR: negative sums *= n^beta / (n^beta + 1)
  # Mean-policy network (actor).
  actor_replay: int = 200_000        # reservoir rows (actor_fit=rows; states keeps sums)
  actor_steps: int = 8
  actor_batch: int = 2048
  average_weighting: str = "linear"   # weight of epoch t's policy in the average
  actor_fit: str = "rows"             # rows: SGD on replay rows | states: full-batch on the
                                      # replay's per-information-state mean policies
  # Scheduler between actor and regret policies.
  scheduler_mode: str = "off"
  # Run control.
  eval_every: int = 50                # epochs between exact evaluations
  max_epochs: int = 0                 # 0 = until the time budget

  def validate(self) -> None:
    need = self.need
    for name in ("critic_hidden", "regret_hidden", "actor_hidden"):
      v = getattr(self, name)
      need(len(v) > 0 and all(h > 0 for h in v), name, "a non-empty list of positive integers")
    for name in ("critic_lr", "regret_lr", "actor_lr", "lr_decay_epochs", "min_lr"):
      v = getattr(self, name)
      need(math.isfinite(v) and v >= 0, name, "a finite float >= 0")
    for name in ("episodes_per_epoch", "groups_per_epoch", "max_snapshots",
                 "critic_replay_episodes", "critic_batch_episodes", "regret_replay",
                 "regret_batch", "bootstrap_memory", "actor_replay", "actor_batch",
                 "eval_every"):
      need(getattr(self, name) > 0, name, "a positive integer")
    for name in ("critic_steps", "regret_steps", "actor_steps", "max_epochs", "current_groups",
                 "critic_prev_actions"):
      need(getattr(self, name) >= 0, name, "an integer >= 0")
    need(self.episodes_per_epoch % self.groups_per_epoch == 0, "episodes_per_epoch",
         f"a multiple of groups_per_epoch ({self.groups_per_epoch})")
    need(1 <= self.current_groups < self.groups_per_epoch, "current_groups",
         f">= 1 and below groups_per_epoch ({self.groups_per_epoch}): the other groups feed W")
    need(0.0 <= self.explore_eps <= 1.0, "explore_eps", "in [0, 1]")
    need(0.0 <= self.tb_lambda <= 1.0, "tb_lambda", "in [0, 1]")
    need(self.critic_trace in CRITIC_TRACES, "critic_trace", f"one of {CRITIC_TRACES}")
    need(0.0 < self.critic_target_tau <= 1.0, "critic_target_tau", "in (0, 1]")
    need(self.lr_decay in LR_DECAYS, "lr_decay", f"one of {LR_DECAYS}")
    need(self.lr_decay_epochs > 0, "lr_decay_epochs", "> 0")
    need(self.policy_draw in POLICY_DRAWS, "policy_draw", f"one of {POLICY_DRAWS}")
    need(self.sampler in SAMPLER_BACKENDS, "sampler", f"one of {SAMPLER_BACKENDS}")
    need(self.regret_fit in REGRET_FITS, "regret_fit", f"one of {REGRET_FITS}")
    need(self.actor_fit in ACTOR_FITS, "actor_fit", f"one of {ACTOR_FITS}")
    for name in ("regret_fit", "actor_fit"):
      need(getattr(self, name) != "states" or self.sampler != "pyspiel", name,
           "'rows' or 'bootstrap' with sampler 'pyspiel': 'states' needs information-state "
           "ids (tree sampler)")
    need(self.regret_fit != "bootstrap" or self.policy_draw == "current", "regret_fit",
         "'rows' or 'states' unless policy_draw is 'current' ('bootstrap' adds each epoch's "
         "regrets to W once, so they must all come from the current policy)")
    need(not self.regret_plus or self.regret_fit == "bootstrap", "regret_plus",
         "false unless regret_fit is 'bootstrap' (the other fits keep no running sums to "
         "clip)")
    need(self.regret_lstsq >= 0, "regret_lstsq", "an int >= 0")
    need(self.regret_lstsq == 0 or self.regret_fit == "states", "regret_lstsq",
         "0 unless regret_fit is 'states' (the exact last layer needs the full batch of "
         "per-state targets)")
    need(self.regret_discount in REGRET_DISCOUNTS, "regret_discount",
         f"one of {REGRET_DISCOUNTS}")
    need(self.regret_discount == "none" or (self.regret_fit in ("states", "bootstrap") and
                                            self.policy_draw == "current"),
         "regret_discount", "'none' unless regret_fit is 'states' or 'bootstrap' and "
         "policy_draw is 'current' (discounting needs each epoch's regret sums to be final)")
    for name in ("dcfr_alpha", "dcfr_beta"):
      need(math.isfinite(getattr(self, name)), name, "a finite float")
    need(self.snapshot_weighting in WEIGHTINGS, "snapshot_weighting", f"one of {WEIGHTINGS}")
    need(self.average_weighting in WEIGHTINGS, "average_weighting", f"one of {WEIGHTINGS}")
    need(self.scheduler_mode in SCHEDULER_MODES, "scheduler_mode",
         f"one of {SCHEDULER_MODES}")


def from_dict(d: dict, base: Optional[ARMACConfig] = None,
              where: Optional[str] = None) -> ARMACConfig:
  """`d` over `base` (default: the defaults); see Params.from_dict."""
  return ARMACConfig.from_dict(d, base, where)


def parse_sets(values: list[str], flag: str = "--set") -> dict:
  """`--set` flag values -> {field: value}. Each value holds KEY=VALUE pairs separated by
  commas (commas inside [...] belong to a list: `critic_hidden=[64,64]`); values parse as
  YAML scalars or lists; unknown keys are left for from_dict to name."""
  out = {}
  items = [p for v in values for p in re.split(r",(?![^\[]*\])", v) if p]
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ConfigError(f"{flag}: {item!r} is not KEY=VALUE (e.g. {flag}=critic_lr=0.001)")
    try:
      out[key.strip()] = yaml.safe_load(value)
    except yaml.YAMLError as e:
      raise ConfigError(f"{flag}: cannot parse the value of {key.strip()!r}: {e}") from e
  return out


def load_yaml(path: str, source: Optional[str] = None) -> dict:
  """The mapping of YAML file `path`. Errors name `source`, where the path came from
  (default `--config=PATH`)."""
  source = source or f"--config={path}"
  try:
    with open(path) as f:
      d = yaml.safe_load(f) or {}
  except (OSError, yaml.YAMLError) as e:
    raise ConfigError(f"{source}: cannot read YAML: {e}") from e
  if not isinstance(d, dict):
    raise ConfigError(f"{source}: top level must be a mapping")
  return d
