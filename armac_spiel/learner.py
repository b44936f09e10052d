"""The `Learner` protocol: what every algorithm gives the one run loop (armac_spiel.runs).

A learner is built from (game string, seed, device, hyper-parameters) and then:
- `step() -> dict` does one unit of training (an ARMAC epoch, a batch of CFR iterations)
  and returns its losses (numbers or None), which the run loop logs; the loop counts the
  steps;
- `average_table()` is the policy that is evaluated and exported: a (S, A) float64 table
  over `games.infostate_table(game).keys` (see armac_spiel.evaluation);
- `episodes` counts what it consumed, in its own unit (episodes, traversals);
- `state_dict()` / `load_state_dict()` checkpoint it as plain data (tensors, numbers,
  strings, lists and dicts), so that an interrupted run resumes exactly.

Optional: `counters()` (the fields that open each metrics line; default `step` and
`episodes`), `current_table()` (evaluated as `exploitability_current`),
`evaluation_extras()` (extra metrics computed at each evaluation, after
`average_table()`), `export(out_dir)` (files written when the run finishes) and
`eval_at_start` (evaluate once before the first step).

Algorithms are looked up by name: `register_learner(name, cls_or_factory)`. A class is
called as `cls(game_string, seed, device=device, **hparams)`; its `params_cls` (an
`armac_spiel.params.Params`), if any, validates the hyper-parameters. A factory is called as
`factory(spec, device)` with the resolved `armac_spiel.runs.RunSpec`. ARMAC and the
baselines are registered here; `import_learner_modules` imports the user's modules that
register more (`--learner_module`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import torch

from armac_spiel.armac import ARMAC
from armac_spiel.baselines import BASELINES
from armac_spiel.config import ARMACConfig
from armac_spiel.params import ConfigError, Params
from armac_spiel.recording import ReplayRecorder
from armac_spiel.scheduler import make_scheduler


@runtime_checkable
class Learner(Protocol):
  game_string: str
  episodes: int

  def step(self) -> dict: ...

  def average_table(self) -> torch.Tensor: ...

  def state_dict(self) -> dict: ...

  def load_state_dict(self, state: dict) -> None: ...


@dataclasses.dataclass(frozen=True)
class LearnerEntry:
  """A registered algorithm: `build(spec, device) -> Learner`, and the dataclass of its
  hyper-parameters (None: any keyword arguments of the class)."""
  name: str
  build: Callable[[Any, str], Learner]
  params_cls: Optional[type] = None


_REGISTRY: dict[str, LearnerEntry] = {}


def register_learner(name: str, learner, params_cls: Optional[type] = None,
                     factory: bool = False) -> None:
  """Makes `name` an algorithm of train, sweep and plot.

  `learner`: a class called as `learner(game_string, seed, device, **hparams)`, or with
  `factory=True` a function `learner(spec, device)`.
  """
  if factory:
    build = learner
  else:
    params_cls = params_cls or getattr(learner, "params_cls", None)

    def build(spec, device, cls=learner):
      return cls(spec.game, spec.seed, device=device, **dict(spec.hparams))
  if params_cls is not None and not issubclass(params_cls, Params):
    raise TypeError(f"register_learner({name!r}): params_cls {params_cls.__name__} must "
                    "derive armac_spiel.params.Params (a frozen dataclass)")
  _REGISTRY[name] = LearnerEntry(name, build, params_cls)


def learner_entry(name: str) -> LearnerEntry:
  if name not in _REGISTRY:
    raise ConfigError(f"--algo={name!r}: unknown algorithm; known: {algorithm_names()}")
  return _REGISTRY[name]


def algorithm_names() -> list[str]:
  return sorted(_REGISTRY)


def import_learner_modules(modules: Sequence[str], flag: str = "--learner_module") -> None:
  """Imports the user's modules that register learners; one that cannot be imported is a
  ConfigError naming the flag and the module."""
  for module in modules:
    try:
      importlib.import_module(module)
    except ImportError as e:
      missing = getattr(e, "name", None)
      if missing is not None and (module == missing or module.startswith(missing + ".")):
        raise ConfigError(f"{flag}={module!r}: must be an importable Python module: {e} (run "
                          "from the directory that holds it, or add that directory to "
                          "PYTHONPATH)") from e
      raise ConfigError(f"{flag}={module!r}: importing it failed: {e}") from e


def _build_armac(spec, device: str):
  """ARMAC with the spec's scheduler (spec.scheduler) and episode recorder (spec.record)."""
  scheduler = recorder = None
  if spec.scheduler is not None:
    scheduler = make_scheduler(spec.scheduler, spec.game, spec.seed, device)
  if spec.record is not None:
    recorder = ReplayRecorder(spec.record, {"scheduler_suite": spec.scheduler})
  return ARMAC(spec.game, ARMACConfig.from_dict(spec.hparams), spec.seed, device=device,
               scheduler=scheduler, recorder=recorder)


register_learner("armac", _build_armac, ARMACConfig, factory=True)
for _name, _cls in BASELINES.items():
  register_learner(_name, _cls)
