"""Scheduler configuration: the seed spec's sections, keys and defaults, validated in one place.

Layout (YAML or dict): top-level `use_scheduler` and the sections `scheduler` (with
`regularization`), `policy_mixer`, `meta_regret`, `state_keying`, `utility_computation`,
`deterministic_replay`. Each section is a `Params` (armac_spiel.params); the suite's
`validate` holds every rule, naming the dotted key (`meta_regret.K`), since rules tie
sections together. Every key, what reads it and the keys beyond the seed's:
docs/scheduler.md.

Mode (`--scheduler=off|continuous|discrete`): off = not use_scheduler; otherwise
policy_mixer.discrete selects discrete (lambda bins) or continuous (one lambda in [0, 1]).
A run's mode is resolved once, by armac_spiel.runs.resolve_spec, into ARMAC's
`scheduler_mode`; the suite it writes is `with_mode` of that mode.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping, Optional, Union

from armac_spiel.config import SCHEDULER_MODES as MODES
from armac_spiel.params import ConfigError, Params

STRATEGIES = ("best_response", "br_critic", "advantage_based", "immediate", "hybrid")
TREE_STRATEGIES = ("best_response",)     # need the compiled tree
AVERAGING = ("uniform", "linear", "discounted")
DEPLOY = ("best_measured", "average", "current")
BUCKET_SCALES = ("total", "reachable")
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
AUTO = "auto"
IntOrAuto = Union[int, Literal["auto"]]
# meta_regret.max_states auto: the manager's rows grow with the keys it is given, up to this
# many (LRU beyond it; about 100 bytes per key with 5 bins).
AUTO_MAX_STATES = 2_000_000


@dataclasses.dataclass(frozen=True)
class RegularizationConfig(Params):
  beta_l2: float = 1e-4
  beta_ent: float = 1e-3


@dataclasses.dataclass(frozen=True)
class SchedulerConfig(Params):
  hidden: tuple[int, ...] = (64, 32)
  k_bins: tuple[float, ...] = BINS
  temperature: float = 1.0
  use_gumbel: bool = True
  scheduler_lr: float = 1e-4
  gumbel_tau_start: float = 1.0
  gumbel_tau_end: float = 0.1
  gumbel_anneal_iters: int = 500      # iterations are ARMAC epochs (seed: 50000)
  scheduler_warmup_iters: int = 20    # (seed: 1000, beyond a 600 s Leduc run)
  init_lambda: float = 0.5
  lam_clamp_eps: float = 1e-3
  regularization: RegularizationConfig = RegularizationConfig()
  distill_steps: int = 2         # warm-started Adam steps per epoch on the manager's average
  update_every: IntOrAuto = AUTO  # epochs between scheduler updates: N (at the epochs whose
                                  # count is a multiple of N) or auto (scheduler.cadence:
                                  # the updates take at most update_fraction of the epochs)
  update_fraction: float = 0.1   # update_every auto: the updates' target share of the
                                 # epochs' seconds


@dataclasses.dataclass(frozen=True)
class PolicyMixerConfig(Params):
  discrete: bool = True
  lambda_bins: tuple[float, ...] = BINS
  temperature_decay: float = 0.99
  min_temperature: float = 0.1
  behaviour: bool = False        # the learning player samples from pi_mix (ARMAC's reach
                                 # correction removes it from every target)
  deploy: str = "best_measured"  # average | current | best_measured (docs/scheduler.md)


@dataclasses.dataclass(frozen=True)
class MetaRegretConfig(Params):
  K: int = 5
  decay: float = 0.995
  initial_regret: float = 0.0
  regret_min: float = 0.0
  smoothing_factor: float = 1e-6
  max_states: IntOrAuto = AUTO   # keys held (LRU beyond); auto: rows grow with the keys
                                 # given, up to AUTO_MAX_STATES (every key of the game)
  util_clip: float = 5.0
  regret_clip: float = 10.0
  lru_evict_batch: int = 100
  averaging: str = "linear"      # weight of iteration t in the average: 1 | t | t^average_power
  average_power: float = 2.0


@dataclasses.dataclass(frozen=True)
class StateKeyingConfig(Params):
  level: IntOrAuto = AUTO        # 3: one key per information state; 2: clusters of the
                                 # information-state tensors; 0, 1: poker situations; auto:
                                 # 3 where the compiled tree holds the game, else 2
  n_clusters: int = 100
  cluster_file: str = "experiments/state_clusters.pt"
  update_clusters: bool = True
  n_buckets: int = 4             # level 1: pot and stack buckets (extension of the seed spec)
  bucket_scale: str = "total"    # level 1: total | reachable (see games.poker_features)


@dataclasses.dataclass(frozen=True)
class UtilityConfig(Params):
  strategy: str = AUTO            # auto: best_response where the compiled tree holds a
                                 # two-player zero-sum game, else br_critic (Scheduler logs it)
  cfr_br_iterations: int = 4     # best_response: CFR-BR iterations per update, each against
                                 # an exact best response to the epoch's parts
  utility_type: str = ""         # the seed's name for strategy; when set it is the strategy
  gamma: float = 0.99
  baseline_window: int = 100
  advantage_window: int = 10
  min_samples: int = 5
  br_episodes: int = 1024        # br_critic: episodes sampled per update
  br_steps: int = 16             # br_critic: Adam steps per update
  br_lr: float = 1e-3
  br_hidden: tuple[int, ...] = (128, 128)
  br_explore: float = 0.1        # br_critic: epsilon-uniform exploration of both players
  br_replay: int = 8             # br_critic: updates whose episodes the critic fits (FIFO)
  br_gate_decay: float = 0.98    # br_critic with deploy best_measured: EMA decay of the
                                 # sampled responders' returns that choose the deployment
  br_gate_z: float = 2.0         # br_critic: the average's mix is deployed only when its
                                 # responder's EMA return is below the actor's by more than
                                 # br_gate_z standard errors of the difference

  @property
  def kind(self) -> str:
    """The utility in force: utility_type when set, else strategy."""
    return self.utility_type or self.strategy


@dataclasses.dataclass(frozen=True)
class ReplayConfig(Params):
  record: bool = False           # record episodes (as --record_replay) into replay_dir
  replay_dir: str = "experiments/replays"
  tolerance: float = 1e-6        # default of experiments.replay_verify --tolerance


@dataclasses.dataclass(frozen=True)
class SchedulerSuiteConfig(Params):
  use_scheduler: bool = True
  scheduler: SchedulerConfig = SchedulerConfig()
  policy_mixer: PolicyMixerConfig = PolicyMixerConfig()
  meta_regret: MetaRegretConfig = MetaRegretConfig()
  state_keying: StateKeyingConfig = StateKeyingConfig()
  utility_computation: UtilityConfig = UtilityConfig()
  deterministic_replay: ReplayConfig = ReplayConfig()

  @property
  def mode(self) -> str:
    if not self.use_scheduler:
      return "off"
    return "discrete" if self.policy_mixer.discrete else "continuous"

  def with_mode(self, mode: str) -> "SchedulerSuiteConfig":
    """The same config switched to `mode` (off|continuous|discrete)."""
    if mode not in MODES:
      raise ConfigError.field("scheduler_mode", mode, f"one of {'|'.join(MODES)}")
    if mode == "off":
      return dataclasses.replace(self, use_scheduler=False)
    mixer = dataclasses.replace(self.policy_mixer, discrete=(mode == "discrete"))
    return dataclasses.replace(self, use_scheduler=True, policy_mixer=mixer)

  @property
  def lambda_bins(self) -> tuple[float, ...]:
    return self.policy_mixer.lambda_bins

  def validate(self) -> None:
    """Every rule of every section; ConfigError names the dotted key of the first invalid
    value."""
    need = self.need
    s, m, mr, sk, u = (self.scheduler, self.policy_mixer, self.meta_regret,
                       self.state_keying, self.utility_computation)
    need(len(s.hidden) >= 1 and all(h >= 1 for h in s.hidden), "scheduler.hidden",
         "a non-empty list of positive ints")
    self._bins("scheduler.k_bins")
    need(s.temperature > 0, "scheduler.temperature", "> 0")
    need(s.scheduler_lr > 0, "scheduler.scheduler_lr", "> 0")
    need(s.gumbel_tau_end > 0, "scheduler.gumbel_tau_end", "> 0")
    need(s.gumbel_tau_start >= s.gumbel_tau_end, "scheduler.gumbel_tau_start",
         ">= scheduler.gumbel_tau_end")
    need(s.gumbel_anneal_iters >= 0, "scheduler.gumbel_anneal_iters", ">= 0")
    need(s.scheduler_warmup_iters >= 0, "scheduler.scheduler_warmup_iters", ">= 0")
    need(0.0 <= s.init_lambda <= 1.0, "scheduler.init_lambda", "in [0, 1]")
    need(0.0 <= s.lam_clamp_eps < 0.5, "scheduler.lam_clamp_eps", "in [0, 0.5)")
    need(s.distill_steps >= 1, "scheduler.distill_steps", ">= 1")
    need(s.update_every == AUTO or s.update_every >= 1, "scheduler.update_every",
         "an integer >= 1 or 'auto'")
    need(0 < s.update_fraction < 1, "scheduler.update_fraction", "in (0, 1)")
    need(s.regularization.beta_l2 >= 0, "scheduler.regularization.beta_l2", ">= 0")
    need(s.regularization.beta_ent >= 0, "scheduler.regularization.beta_ent", ">= 0")
    self._bins("policy_mixer.lambda_bins")
    need(m.lambda_bins == s.k_bins, "policy_mixer.lambda_bins",
         f"equal to scheduler.k_bins {list(s.k_bins)}")
    need(0 < m.temperature_decay <= 1, "policy_mixer.temperature_decay", "in (0, 1]")
    need(m.min_temperature > 0, "policy_mixer.min_temperature", "> 0")
    need(m.deploy in DEPLOY, "policy_mixer.deploy", f"one of {'|'.join(DEPLOY)}")
    need(mr.K == len(m.lambda_bins), "meta_regret.K",
         f"len(policy_mixer.lambda_bins) = {len(m.lambda_bins)}")
    need(0.0 <= mr.decay < 1.0, "meta_regret.decay", "in [0, 1)")
    need(mr.smoothing_factor >= 0, "meta_regret.smoothing_factor", ">= 0")
    need(mr.max_states == AUTO or mr.max_states >= 1, "meta_regret.max_states",
         "an integer >= 1 or 'auto'")
    need(mr.lru_evict_batch >= 1 and (mr.max_states == AUTO or
                                      mr.lru_evict_batch <= mr.max_states),
         "meta_regret.lru_evict_batch", "in [1, meta_regret.max_states]")
    need(mr.util_clip > 0 and math.isfinite(mr.util_clip), "meta_regret.util_clip",
         "finite and > 0")
    need(math.isfinite(mr.regret_clip) and mr.regret_min < mr.regret_clip,
         "meta_regret.regret_clip", "finite and > meta_regret.regret_min")
    need(mr.regret_min <= mr.initial_regret <= mr.regret_clip, "meta_regret.initial_regret",
         "in [regret_min, regret_clip]")
    need(mr.averaging in AVERAGING, "meta_regret.averaging", f"one of {'|'.join(AVERAGING)}")
    need(mr.average_power >= 0, "meta_regret.average_power", ">= 0")
    need(sk.level in (0, 1, 2, 3, AUTO), "state_keying.level", "one of 0|1|2|3|auto")
    need(sk.n_clusters >= 1, "state_keying.n_clusters", ">= 1")
    need(bool(sk.cluster_file), "state_keying.cluster_file", "a non-empty path")
    need(sk.n_buckets >= 1, "state_keying.n_buckets", ">= 1")
    need(sk.bucket_scale in BUCKET_SCALES, "state_keying.bucket_scale",
         f"one of {'|'.join(BUCKET_SCALES)}")
    need(u.strategy in STRATEGIES + (AUTO,), "utility_computation.strategy",
         f"one of {'|'.join(STRATEGIES + (AUTO,))}")
    need(u.utility_type in STRATEGIES + ("",), "utility_computation.utility_type",
         f"one of {'|'.join(STRATEGIES)}")
    need(not u.utility_type or u.strategy in (AUTO, "best_response", u.utility_type),
         "utility_computation.utility_type", f"unset or equal to utility_computation.strategy "
         f"({u.strategy}): set one of the two")
    need(u.br_episodes >= 2, "utility_computation.br_episodes", ">= 2")
    need(u.cfr_br_iterations >= 1, "utility_computation.cfr_br_iterations", ">= 1")
    need(u.br_steps >= 1, "utility_computation.br_steps", ">= 1")
    need(u.br_lr > 0, "utility_computation.br_lr", "> 0")
    need(len(u.br_hidden) >= 1 and all(h >= 1 for h in u.br_hidden),
         "utility_computation.br_hidden", "a non-empty list of positive ints")
    need(0.0 <= u.br_explore <= 1.0, "utility_computation.br_explore", "in [0, 1]")
    need(u.br_replay >= 1, "utility_computation.br_replay", ">= 1")
    need(0.0 <= u.br_gate_decay < 1.0, "utility_computation.br_gate_decay", "in [0, 1)")
    need(u.br_gate_z >= 0.0, "utility_computation.br_gate_z", ">= 0")
    need(0.0 <= u.gamma <= 1.0, "utility_computation.gamma", "in [0, 1]")
    need(u.baseline_window >= 1, "utility_computation.baseline_window", ">= 1")
    need(u.advantage_window >= 1, "utility_computation.advantage_window", ">= 1")
    need(u.min_samples >= 0, "utility_computation.min_samples", ">= 0")
    need(u.min_samples <= u.baseline_window, "utility_computation.min_samples",
         "<= utility_computation.baseline_window")
    need(self.deterministic_replay.tolerance >= 0, "deterministic_replay.tolerance", ">= 0")

  def _bins(self, key: str) -> None:
    section, name = key.split(".")
    bins = getattr(getattr(self, section), name)
    self.need(len(bins) >= 2, key, "a list of at least 2 bins")
    self.need(all(0.0 <= b <= 1.0 for b in bins), key, "bins in [0, 1]")
    self.need(all(a < b for a, b in zip(bins, bins[1:])), key, "strictly increasing")


def from_dict(d: Optional[Mapping[str, Any]]) -> SchedulerSuiteConfig:
  """Config from the seed's YAML layout; missing keys take the spec defaults."""
  return SchedulerSuiteConfig.from_dict(d)
