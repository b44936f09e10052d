"""Scheduler configuration: the seed spec's sections, keys and defaults, validated in one place.

Layout (YAML or dict) as in shared/spec/seed-scheduler-summary.md: top-level `use_scheduler`
and the sections `scheduler` (with `regularization`), `policy_mixer`, `meta_regret`,
`state_keying`, `utility_computation`, `deterministic_replay`. `from_dict` rejects unknown
keys and invalid values with a ConfigError naming the dotted key. Every key, what reads it
and the keys beyond the seed's: docs/scheduler.md.

Mode (`--scheduler=off|continuous|discrete`): off = not use_scheduler; otherwise
policy_mixer.discrete selects discrete (lambda bins) or continuous (one lambda in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from armac_spiel.config import ConfigError

MODES = ("off", "continuous", "discrete")
STRATEGIES = ("best_response", "br_critic", "advantage_based", "immediate", "hybrid")
TREE_STRATEGIES = ("best_response",)     # need the compiled tree
AVERAGING = ("uniform", "linear", "discounted")
DEPLOY = ("best_measured", "average", "current")
BUCKET_SCALES = ("total", "reachable")
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class RegularizationConfig:
  beta_l2: float = 1e-4
  beta_ent: float = 1e-3


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
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
  update_every: int = 1          # epochs between scheduler updates (updates run at epochs
                                 # whose count is a multiple of it)


@dataclasses.dataclass(frozen=True)
class PolicyMixerConfig:
  discrete: bool = True
  lambda_bins: tuple[float, ...] = BINS
  temperature_decay: float = 0.99
  min_temperature: float = 0.1
  behaviour: bool = False        # the learning player samples from pi_mix (ARMAC's reach
                                 # correction removes it from every target)
  deploy: str = "best_measured"  # average | current | best_measured (docs/scheduler.md)


@dataclasses.dataclass(frozen=True)
class MetaRegretConfig:
  K: int = 5
  decay: float = 0.995
  initial_regret: float = 0.0
  regret_min: float = 0.0
  smoothing_factor: float = 1e-6
  max_states: int = 10000
  util_clip: float = 5.0
  regret_clip: float = 10.0
  lru_evict_batch: int = 100
  averaging: str = "linear"      # weight of iteration t in the average: 1 | t | t^average_power
  average_power: float = 2.0


@dataclasses.dataclass(frozen=True)
class StateKeyingConfig:
  level: int = 3                 # 3: one key per information state
  n_clusters: int = 100
  cluster_file: str = "experiments/state_clusters.pt"
  update_clusters: bool = True
  n_buckets: int = 4             # level 1: pot and stack buckets (extension of the seed spec)
  bucket_scale: str = "total"    # level 1: total | reachable (see games.poker_features)


@dataclasses.dataclass(frozen=True)
class UtilityConfig:
  strategy: str = "best_response"
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
class ReplayConfig:
  record: bool = False           # record episodes (as --record_replay) into replay_dir
  replay_dir: str = "experiments/replays"
  tolerance: float = 1e-6        # default of experiments.replay_verify --tolerance


@dataclasses.dataclass(frozen=True)
class SchedulerSuiteConfig:
  use_scheduler: bool = True
  scheduler: SchedulerConfig = SchedulerConfig()
  policy_mixer: PolicyMixerConfig = PolicyMixerConfig()
  meta_regret: MetaRegretConfig = MetaRegretConfig()
  state_keying: StateKeyingConfig = StateKeyingConfig()
  utility_computation: UtilityConfig = UtilityConfig()
  deterministic_replay: ReplayConfig = ReplayConfig()

  def __post_init__(self):
    validate(self)

  @property
  def mode(self) -> str:
    if not self.use_scheduler:
      return "off"
    return "discrete" if self.policy_mixer.discrete else "continuous"

  def with_mode(self, mode: str) -> "SchedulerSuiteConfig":
    """The same config switched to `mode` (off|continuous|discrete)."""
    if mode not in MODES:
      raise ConfigError(f"scheduler mode must be one of {'|'.join(MODES)}, got {mode!r}")
    if mode == "off":
      return dataclasses.replace(self, use_scheduler=False)
    mixer = dataclasses.replace(self.policy_mixer, discrete=(mode == "discrete"))
    return dataclasses.replace(self, use_scheduler=True, policy_mixer=mixer)

  @property
  def lambda_bins(self) -> tuple[float, ...]:
    return self.policy_mixer.lambda_bins

  def to_dict(self) -> dict[str, Any]:
    return _to_dict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any] | None) -> "SchedulerSuiteConfig":
    return from_dict(d)


def _to_dict(obj) -> dict[str, Any]:
  out = {}
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    if dataclasses.is_dataclass(v):
      v = _to_dict(v)
    elif isinstance(v, tuple):
      v = list(v)
    out[f.name] = v
  return out


def _coerce(value, typ: str, key: str):
  """Coerces YAML scalars (PyYAML reads `1e-4` as a string) to the field's type."""
  def bad(what):
    return ConfigError(f"{key} must be {what}, got {value!r}")
  if typ == "bool":
    if not isinstance(value, bool):
      raise bad("a bool (true|false)")
    return value
  if typ == "int":
    if isinstance(value, bool) or not isinstance(value, int):
      raise bad("an int")
    return value
  if typ == "float":
    if isinstance(value, bool):
      raise bad("a number")
    try:
      v = float(value)
    except (TypeError, ValueError):
      raise bad("a number") from None
    if math.isnan(v):
      raise bad("a number")
    return v
  if typ == "str":
    if not isinstance(value, str):
      raise bad("a string")
    return value
  if typ.startswith("tuple"):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
      raise bad("a list")
    inner = "int" if "int" in typ else "float"
    return tuple(_coerce(v, inner, key) for v in value)
  raise AssertionError(typ)


def _build(cls, d, prefix: str):
  if d is None:
    d = {}
  if not isinstance(d, Mapping):
    raise ConfigError(f"{prefix or 'scheduler config'} must be a mapping, got {d!r}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  for k, v in d.items():
    key = f"{prefix}.{k}" if prefix else str(k)
    if k not in fields:
      raise ConfigError(f"unknown scheduler config key {key!r}; allowed in "
                       f"{prefix or 'top level'}: {', '.join(fields)}")
    typ = fields[k].type
    sub = _SECTIONS.get(typ)
    kwargs[k] = _build(sub, v, key) if sub else _coerce(v, typ, key)
  return cls(**kwargs)


_SECTIONS = {
    "RegularizationConfig": RegularizationConfig,
    "SchedulerConfig": SchedulerConfig,
    "PolicyMixerConfig": PolicyMixerConfig,
    "MetaRegretConfig": MetaRegretConfig,
    "StateKeyingConfig": StateKeyingConfig,
    "UtilityConfig": UtilityConfig,
    "ReplayConfig": ReplayConfig,
}


def from_dict(d: Mapping[str, Any] | None) -> SchedulerSuiteConfig:
  """Config from the seed's YAML layout; missing keys take the spec defaults."""
  return _build(SchedulerSuiteConfig, d, "")


def _check(ok: bool, key: str, what: str, value) -> None:
  if not ok:
    raise ConfigError(f"{key} must be {what}, got {value!r}")


def _bins(key: str, bins) -> None:
  _check(len(bins) >= 2, key, "a list of at least 2 bins", bins)
  _check(all(0.0 <= b <= 1.0 for b in bins), key, "bins in [0, 1]", bins)
  _check(all(a < b for a, b in zip(bins, bins[1:])), key, "strictly increasing", bins)


def validate(c: SchedulerSuiteConfig) -> None:
  """Raises ConfigError naming the dotted key of the first invalid value."""
  s, m, mr, sk, u, r = (c.scheduler, c.policy_mixer, c.meta_regret, c.state_keying,
                        c.utility_computation, c.deterministic_replay)
  _check(len(s.hidden) >= 1 and all(h >= 1 for h in s.hidden), "scheduler.hidden",
         "a non-empty list of positive ints", s.hidden)
  _bins("scheduler.k_bins", s.k_bins)
  _check(s.temperature > 0, "scheduler.temperature", "> 0", s.temperature)
  _check(s.scheduler_lr > 0, "scheduler.scheduler_lr", "> 0", s.scheduler_lr)
  _check(s.gumbel_tau_end > 0, "scheduler.gumbel_tau_end", "> 0", s.gumbel_tau_end)
  _check(s.gumbel_tau_start >= s.gumbel_tau_end, "scheduler.gumbel_tau_start",
         ">= scheduler.gumbel_tau_end", s.gumbel_tau_start)
  _check(s.gumbel_anneal_iters >= 0, "scheduler.gumbel_anneal_iters", ">= 0",
         s.gumbel_anneal_iters)
  _check(s.scheduler_warmup_iters >= 0, "scheduler.scheduler_warmup_iters", ">= 0",
         s.scheduler_warmup_iters)
  _check(0.0 <= s.init_lambda <= 1.0, "scheduler.init_lambda", "in [0, 1]", s.init_lambda)
  _check(0.0 <= s.lam_clamp_eps < 0.5, "scheduler.lam_clamp_eps", "in [0, 0.5)",
         s.lam_clamp_eps)
  _check(s.distill_steps >= 1, "scheduler.distill_steps", ">= 1", s.distill_steps)
  _check(isinstance(s.update_every, int) and s.update_every >= 1, "scheduler.update_every",
         "an integer >= 1", s.update_every)
  _check(s.regularization.beta_l2 >= 0, "scheduler.regularization.beta_l2", ">= 0",
         s.regularization.beta_l2)
  _check(s.regularization.beta_ent >= 0, "scheduler.regularization.beta_ent", ">= 0",
         s.regularization.beta_ent)
  _bins("policy_mixer.lambda_bins", m.lambda_bins)
  _check(tuple(m.lambda_bins) == tuple(s.k_bins), "policy_mixer.lambda_bins",
         f"equal to scheduler.k_bins {list(s.k_bins)}", list(m.lambda_bins))
  _check(0 < m.temperature_decay <= 1, "policy_mixer.temperature_decay", "in (0, 1]",
         m.temperature_decay)
  _check(m.min_temperature > 0, "policy_mixer.min_temperature", "> 0", m.min_temperature)
  _check(m.deploy in DEPLOY, "policy_mixer.deploy", f"one of {'|'.join(DEPLOY)}", m.deploy)
  _check(mr.K == len(m.lambda_bins), "meta_regret.K",
         f"len(policy_mixer.lambda_bins) = {len(m.lambda_bins)}", mr.K)
  _check(0.0 <= mr.decay < 1.0, "meta_regret.decay", "in [0, 1)", mr.decay)
  _check(mr.smoothing_factor >= 0, "meta_regret.smoothing_factor", ">= 0", mr.smoothing_factor)
  _check(mr.max_states >= 1, "meta_regret.max_states", ">= 1", mr.max_states)
  _check(1 <= mr.lru_evict_batch <= mr.max_states, "meta_regret.lru_evict_batch",
         "in [1, meta_regret.max_states]", mr.lru_evict_batch)
  _check(mr.util_clip > 0 and math.isfinite(mr.util_clip), "meta_regret.util_clip",
         "finite and > 0", mr.util_clip)
  _check(math.isfinite(mr.regret_clip) and mr.regret_min < mr.regret_clip,
         "meta_regret.regret_clip", "finite and > meta_regret.regret_min", mr.regret_clip)
  _check(mr.regret_min <= mr.initial_regret <= mr.regret_clip, "meta_regret.initial_regret",
         "in [regret_min, regret_clip]", mr.initial_regret)
  _check(mr.averaging in AVERAGING, "meta_regret.averaging", f"one of {'|'.join(AVERAGING)}",
         mr.averaging)
  _check(mr.average_power >= 0, "meta_regret.average_power", ">= 0", mr.average_power)
  _check(sk.level in (0, 1, 2, 3), "state_keying.level", "one of 0|1|2|3", sk.level)
  _check(sk.n_clusters >= 1, "state_keying.n_clusters", ">= 1", sk.n_clusters)
  _check(bool(sk.cluster_file), "state_keying.cluster_file", "a non-empty path", sk.cluster_file)
  _check(sk.n_buckets >= 1, "state_keying.n_buckets", ">= 1", sk.n_buckets)
  _check(sk.bucket_scale in BUCKET_SCALES, "state_keying.bucket_scale",
         f"one of {'|'.join(BUCKET_SCALES)}", sk.bucket_scale)
  _check(u.strategy in STRATEGIES, "utility_computation.strategy",
         f"one of {'|'.join(STRATEGIES)}", u.strategy)
  _check(u.utility_type in STRATEGIES + ("",), "utility_computation.utility_type",
         f"one of {'|'.join(STRATEGIES)}", u.utility_type)
  _check(not u.utility_type or u.strategy in ("best_response", u.utility_type),
         "utility_computation.utility_type", f"unset or equal to utility_computation.strategy "
         f"({u.strategy}): set one of the two", u.utility_type)
  _check(u.br_episodes >= 2, "utility_computation.br_episodes", ">= 2", u.br_episodes)
  _check(u.cfr_br_iterations >= 1, "utility_computation.cfr_br_iterations", ">= 1",
         u.cfr_br_iterations)
  _check(u.br_steps >= 1, "utility_computation.br_steps", ">= 1", u.br_steps)
  _check(u.br_lr > 0, "utility_computation.br_lr", "> 0", u.br_lr)
  _check(len(u.br_hidden) >= 1 and all(h >= 1 for h in u.br_hidden),
         "utility_computation.br_hidden", "a non-empty list of positive ints", u.br_hidden)
  _check(0.0 <= u.br_explore <= 1.0, "utility_computation.br_explore", "in [0, 1]",
         u.br_explore)
  _check(u.br_replay >= 1, "utility_computation.br_replay", ">= 1", u.br_replay)
  _check(0.0 <= u.br_gate_decay < 1.0, "utility_computation.br_gate_decay", "in [0, 1)",
         u.br_gate_decay)
  _check(u.br_gate_z >= 0.0, "utility_computation.br_gate_z", ">= 0", u.br_gate_z)
  _check(0.0 <= u.gamma <= 1.0, "utility_computation.gamma", "in [0, 1]", u.gamma)
  _check(u.baseline_window >= 1, "utility_computation.baseline_window", ">= 1",
         u.baseline_window)
  _check(u.advantage_window >= 1, "utility_computation.advantage_window", ">= 1",
         u.advantage_window)
  _check(u.min_samples >= 0, "utility_computation.min_samples", ">= 0", u.min_samples)
  _check(u.min_samples <= u.baseline_window, "utility_computation.min_samples",
         "<= utility_computation.baseline_window", u.min_samples)
  _check(r.tolerance >= 0, "deterministic_replay.tolerance", ">= 0", r.tolerance)
