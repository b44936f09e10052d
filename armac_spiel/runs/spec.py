"""One run, fully resolved: `RunSpec`, and `resolve_spec`, the one place that builds it.

Precedence, lowest first: the algorithm's defaults (a frozen dataclass), for ARMAC without a
YAML the fields derived from the game (armac_spiel.config.derive_config; `spec.derived`
names each one in effect with its reason), the YAML config (`--config`, else
experiments/configs/<game>.yaml for ARMAC; a YAML means no derivation), `--set KEY=VALUE`
pairs, then the dedicated flags (`--max_epochs`, `--eval_every`, `--scheduler`,
`--sampler`). Every error is a `ConfigError` naming the flag or field and what is allowed.

Algorithms are the names of armac_spiel.learner's registry, plus `ALIASES`: named ARMAC
variants, each a fixed set of config overrides (applied after the YAML, before --set). An
ARMAC YAML may hold a mapping named after an ARMAC algorithm (`armac` or an alias): that
variant's own values, applied over the file's top level and under the alias's overrides.
The scheduler mode is decided here and nowhere else: `--scheduler`, an alias's or
`--set`'s `scheduler_mode` wins; otherwise a YAML `scheduler_mode` other than off;
otherwise the YAML's scheduler sections (`use_scheduler` and `policy_mixer.discrete`);
otherwise off. The mode is then stored once, as the ARMAC config's `scheduler_mode`;
`spec.scheduler` holds the scheduler suite switched to it (None when off).

Recording (ARMAC only) is resolved here too: the `--record_replay` directory, else the
YAML's deterministic_replay section (armac_spiel.recording.resolve_recorder).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Mapping, Optional, Union

import torch

from armac_spiel.approx import check_method
from armac_spiel.config import SCHEDULER_MODES, ARMACConfig, derive_config, load_yaml
from armac_spiel.learner import learner_entry
from armac_spiel.params import ConfigError, Params
from armac_spiel.recording import RecorderConfig, resolve_recorder
from armac_spiel.scheduler.config import ReplayConfig, SchedulerSuiteConfig
from armac_spiel.scheduler.strategies import resolve_strategy
from games import load_game

BOOTSTRAP = {"regret_fit": "bootstrap", "actor_fit": "rows", "policy_draw": "current",
             "max_snapshots": 1, "regret_discount": "dcfr", "regret_plus": True,
             "regret_lstsq": 0}
ALIASES = {
    "armac_sched_discrete": ("armac", {"scheduler_mode": "discrete"}),
    "armac_sched_continuous": ("armac", {"scheduler_mode": "continuous"}),
    # ARMAC's paths: the tuned config on the compiled tree, and the general path (networks
    # fit replay rows) on the tree sampler and on OpenSpiel's game API only.
    "armac_states": ("armac", {"sampler": "tree"}),
    "armac_rows_tree": ("armac", {"sampler": "tree", "regret_fit": "rows",
                                  "actor_fit": "rows", "regret_discount": "none",
                                  "regret_lstsq": 0}),
    "armac_rows_pyspiel": ("armac", {"sampler": "pyspiel", "regret_fit": "rows",
                                     "actor_fit": "rows", "regret_discount": "none",
                                     "regret_lstsq": 0}),
    # The general path with bootstrapped cumulative regrets (armac_spiel/bootstrap.py): W
    # carries DCFR+'s sums, re-fitted on a bounded memory of the distinct encodings seen.
    "armac_boot_tree": ("armac", dict(BOOTSTRAP, sampler="tree")),
    "armac_boot_pyspiel": ("armac", dict(BOOTSTRAP, sampler="pyspiel")),
}
DEVICES = ("auto", "cpu", "cuda")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "experiments", "configs")
# The default bound on the share of a run's seconds (training + evaluation) that exact
# evaluations take (RunSpec.eval_fraction; armac_spiel.runs.loop).
DEFAULT_EVAL_FRACTION = 0.1
# The fields of a RunSpec that define what is computed; resuming requires them unchanged.
IDENTITY_FIELDS = ("algo", "game", "seed", "hparams", "scheduler")
# The top-level keys of an ARMAC YAML that belong to the scheduler suite.
SCHEDULER_SECTIONS = tuple(f.name for f in dataclasses.fields(SchedulerSuiteConfig))


@dataclasses.dataclass(frozen=True)
class RunSpec(Params):
  """Everything one run needs; written to the run directory as config.json."""
  algo: str                        # as asked (an alias stays visible in config.json)
  learner: str                     # the registered learner that runs
  game: str
  seed: int
  out_dir: str
  hparams: Mapping[str, Any]       # the learner's resolved hyper-parameters
  scheduler: Optional[Mapping[str, Any]] = None   # ARMAC scheduler suite, None when off
  time_budget_s: Optional[float] = None  # training seconds, evaluation excluded
  max_steps: Optional[int] = None  # learner steps (ARMAC: epochs)
  eval_every: Optional[int] = None     # steps between exact evaluations
  eval_every_s: Optional[float] = None  # training seconds between exact evaluations
  eval_fraction: Optional[float] = None  # evaluations' most share of the run's seconds: a
                                         # due evaluation waits until it fits (None: fixed)
  device: str = "auto"
  resume: bool = False
  plot: bool = True
  record: Optional[RecorderConfig] = None  # ARMAC episode recording (armac_spiel.recording)
  config_file: Optional[str] = None
  evaluation: str = "auto"  # auto | exact | learned_br | lbr (armac_spiel.approx.in_run)
  derived: Optional[Mapping[str, Any]] = None  # ARMAC without a YAML: {field: {"value",
                                               # "why"}} of the derived fields in effect

  @property
  def config(self) -> ARMACConfig:
    """The ARMAC config (ARMAC runs only); its scheduler_mode is the run's."""
    return ARMACConfig.from_dict(self.hparams)

  def identity(self) -> dict:
    d = self.to_dict()
    return {k: d[k] for k in IDENTITY_FIELDS}


def split_config(raw: Mapping[str, Any], where: Optional[str] = None
                 ) -> tuple[dict, Optional[SchedulerSuiteConfig]]:
  """An ARMAC YAML mapping -> (its ARMAC keys, the scheduler suite of its scheduler sections,
  None when it has none)."""
  armac = {k: v for k, v in raw.items() if k not in SCHEDULER_SECTIONS}
  sections = {k: v for k, v in raw.items() if k in SCHEDULER_SECTIONS}
  if not sections:
    return armac, None
  return armac, SchedulerSuiteConfig.from_dict(sections, where=where)


def resolve_device(device: str) -> str:
  """`auto` -> cuda when available, else cpu; cuda on a machine without one is an error."""
  if device not in DEVICES and not re.fullmatch(r"cuda:\d+", device or ""):
    raise ConfigError(f"--device={device!r}: must be one of {DEVICES} (or cuda:N)")
  if device == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  if device.startswith("cuda") and not torch.cuda.is_available():
    raise ConfigError(f"--device={device!r}: CUDA is not available on this machine; "
                      "use --device=cpu or --device=auto")
  return device


# `--config=derived`: ARMAC with the config derived from the game even where a tuned YAML
# exists (experiments/configs/kuhn_poker.yaml, leduc_poker.yaml).
DERIVED_CONFIG = "derived"


def default_config_path(game_name: str) -> Optional[str]:
  """experiments/configs/<game>.yaml (game parameters stripped), if it exists."""
  path = os.path.join(CONFIG_DIR, re.sub(r"\(.*", "", game_name) + ".yaml")
  return path if os.path.exists(path) else None


def check_budgets(time_budget_s, max_steps, eval_every, eval_every_s,
                  need_one: bool = True, steps_flag: str = "--max_steps") -> None:
  """Budgets and cadences, each error naming its flag; `need_one`: some budget is given."""
  if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s > 0):
    raise ConfigError(f"--time_budget_s={time_budget_s}: must be a positive number of "
                      "training seconds (or leave it out and give --max_epochs/--max_steps)")
  if max_steps is not None and max_steps < 0:
    raise ConfigError(f"{steps_flag}={max_steps}: must be >= 0 (0: no step limit)")
  if eval_every is not None and eval_every < 1:
    raise ConfigError(f"--eval_every={eval_every}: must be a positive number of steps")
  if eval_every_s is not None and not (math.isfinite(eval_every_s) and eval_every_s > 0):
    raise ConfigError(f"--eval_every_s={eval_every_s}: must be a positive number of seconds")
  if need_one and time_budget_s is None and not max_steps:
    raise ConfigError("give a time budget (--time_budget_s) or a step budget (--max_epochs "
                      "for ARMAC, --max_steps otherwise, or config max_epochs), or both")


def resolve_eval_fraction(eval_fraction: Optional[float], fixed: bool) -> Optional[float]:
  """RunSpec.eval_fraction from the flags: `--eval_fraction` when given (0: None, a fixed
  cadence); otherwise DEFAULT_EVAL_FRACTION, or None when the cadence was asked for
  (`fixed`: --eval_every, --eval_every_s, or eval_every in --set or the YAML; runs that are compared
  evaluate at the steps they name)."""
  if eval_fraction is None:
    return None if fixed else DEFAULT_EVAL_FRACTION
  if not (math.isfinite(eval_fraction) and 0 <= eval_fraction < 1):
    raise ConfigError(f"--eval_fraction={eval_fraction}: must be in [0, 1): the most share "
                      "of the run's seconds that exact evaluations may take (0: evaluate at "
                      "the fixed cadence)")
  return eval_fraction or None


def _resolve_params(params_cls, raw: dict, where: str) -> dict:
  """`raw` over the defaults of `params_cls` (validated by constructing it)."""
  if params_cls is None:
    return dict(raw)
  return params_cls.from_dict(raw, where=where).to_dict()


def resolve_spec(algo: str, game: str, seed: int, out_dir: str, *,
                 config_path: Optional[str] = None, sets: Optional[dict] = None,
                 time_budget_s: Optional[float] = None, max_steps: Optional[int] = None,
                 eval_every: Optional[int] = None, eval_every_s: Optional[float] = None,
                 eval_fraction: Optional[float] = None, scheduler: Optional[str] = None,
                 sampler: Optional[str] = None,
                 device: str = "auto", resume: bool = False, plot: bool = True,
                 record: Union[Mapping[str, Any], RecorderConfig, None] = None,
                 config_flag: str = "--config", evaluation: str = "auto") -> RunSpec:
  """Resolves defaults < YAML < `sets` < flags into a RunSpec (see the module docstring).

  For ARMAC, `max_steps` / `eval_every` override the config's `max_epochs` / `eval_every`.
  `eval_fraction`: see resolve_eval_fraction (the default cadence is bounded to
  DEFAULT_EVAL_FRACTION of the run's seconds; `eval_every`, `eval_every_s`, or an
  `eval_every` in `sets` or the YAML fix it).
  For another algorithm the YAML maps its hyper-parameters, either at the top level or in
  a section named after the algorithm (one file may serve several algorithms).
  `record`: RecorderConfig fields (out_dir: --record_replay, may be None), resolved with
  the YAML's deterministic_replay section (armac_spiel.recording.resolve_recorder).
  `config_flag`: the flag that gave `config_path`, named in errors.
  """
  load_game(game)  # GameError names the game and what is wrong with it
  try:
    check_method(evaluation, game, "--evaluation")
  except ValueError as e:
    raise ConfigError(str(e)) from e
  # The flags first, so that the error names the flag rather than a config field.
  learner, alias_sets = ALIASES.get(algo, (algo, {}))
  check_budgets(time_budget_s, max_steps, eval_every, eval_every_s, need_one=False,
                steps_flag="--max_epochs" if learner == "armac" else "--max_steps")
  entry = learner_entry(learner)
  sets = dict(sets or {})
  path = config_path or None
  source = f"{config_flag}={path}"
  if path == DERIVED_CONFIG:  # no YAML, not even the game's tuned one: the derived config
    path = None
  elif learner == "armac" and path is None:
    path = default_config_path(game)
    source = f"the default config {path} ({config_flag} picks another)"
  raw = load_yaml(path, source) if path else {}
  # A cadence named anywhere (flag, --set, the YAML or its section for this algorithm) is
  # kept as it is: runs that are compared evaluate at the steps they name.
  named = [eval_every, eval_every_s, sets.get("eval_every"), raw.get("eval_every"),
           (raw.get(algo) or {}).get("eval_every") if isinstance(raw.get(algo), dict) else None]
  eval_fraction = resolve_eval_fraction(eval_fraction, any(v is not None for v in named))
  where = path if not sets else (f"{path} / --set" if path else "--set")
  if learner == "armac":
    raw, suite = split_config(raw, path)
    # Sections named after ARMAC's algorithm names hold one variant's own values, over the
    # file's top level and under the variant's fixed overrides.
    names = set(ALIASES) | {"armac"}
    sections = {k: raw.pop(k) for k in list(raw) if k in names and isinstance(raw[k], dict)}
    section = sections.get(algo, {})
    flag_fields = {"max_epochs": max_steps, "eval_every": eval_every,
                   "sampler": sampler}
    given = {**raw, **section, **alias_sets, **sets,
             **{k: v for k, v in flag_fields.items() if v is not None}}
    derived = {} if path else derive_config(game, sampler=given.get("sampler", "auto"))
    given_fields = set(given)
    derived = {k: v for k, v in derived.items() if k not in given_fields}
    merged = {**{k: v.value for k, v in derived.items()}, **given}
    if derived:
      where = f"{where} over the config derived from the game" if where else \
          "the config derived from the game (armac_spiel.config.derive_config)"
    cfg = ARMACConfig.from_dict(merged, where=where)
    derived_dict = {k: {"value": cfg.to_dict()[k], "why": v.why}
                    for k, v in derived.items()} or None
    mode = scheduler or sets.get("scheduler_mode") or alias_sets.get("scheduler_mode")
    if mode is None:
      if cfg.scheduler_mode != "off":
        mode = cfg.scheduler_mode
      else:
        mode = "off" if suite is None else suite.mode
    if mode not in SCHEDULER_MODES:
      raise ConfigError(f"--scheduler={mode!r}: must be one of {SCHEDULER_MODES}")
    cfg = cfg.replace(scheduler_mode=mode)
    sched_dict = None
    if mode != "off":
      # config.json names the update strategy that runs (auto decided for the game)
      sched_dict = resolve_strategy((suite or SchedulerSuiteConfig()).with_mode(mode),
                                    load_game(game), game).to_dict()
    replay = suite.deterministic_replay if suite is not None else ReplayConfig()
    record = resolve_recorder(record, replay)
    hparams = cfg.to_dict()
    max_steps, eval_every = cfg.max_epochs or None, cfg.eval_every
  else:
    record_dir = (record.out_dir if isinstance(record, RecorderConfig)
                  else (record or {}).get("out_dir"))
    for flag, value in (("--scheduler", scheduler if scheduler != "off" else None),
                        ("--sampler", sampler), ("--record_replay", record_dir)):
      if value is not None:
        raise ConfigError(f"{flag}: applies to ARMAC only, not --algo={algo}")
    if isinstance(raw.get(learner), dict):
      raw = raw[learner]
    hparams = _resolve_params(entry.params_cls, {**raw, **sets},
                              f"{where or 'hyper-parameters'} ({algo})")
    sched_dict = record = derived_dict = None
  check_budgets(time_budget_s, max_steps, eval_every, eval_every_s)
  return RunSpec(algo=algo, learner=learner, game=game, seed=int(seed),
                 out_dir=str(out_dir), hparams=hparams, scheduler=sched_dict,
                 time_budget_s=time_budget_s, max_steps=max_steps, eval_every=eval_every,
                 eval_every_s=eval_every_s, eval_fraction=eval_fraction, device=device,
                 resume=resume, plot=plot, record=record, config_file=path,
                 evaluation=evaluation, derived=derived_dict)
