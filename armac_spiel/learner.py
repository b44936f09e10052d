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
called as `cls(game_string, seed, device=device, **hparams)`; its `params_cls` (a frozen
dataclass), if any, validates the hyper-parameters. A factory is called as
`factory(spec, device)` with the resolved `armac_spiel.runs.RunSpec`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import torch

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
  _REGISTRY[name] = LearnerEntry(name, build, params_cls)


def learner_entry(name: str) -> LearnerEntry:
  _register_builtins()
  if name not in _REGISTRY:
    from armac_spiel.config import ConfigError
    raise ConfigError(f"--algo={name!r}: unknown algorithm; known: {algorithm_names()}")
  return _REGISTRY[name]


def algorithm_names() -> list[str]:
  _register_builtins()
  return sorted(_REGISTRY)


def _register_builtins() -> None:
  if "armac" in _REGISTRY:
    return
  # Imported here: armac and baselines import this module for the protocol.
  from armac_spiel import baselines, config
  register_learner("armac", _build_armac, config.ARMACConfig, factory=True)
  for name, cls in baselines.BASELINES.items():
    register_learner(name, cls)


def _build_armac(spec, device: str):
  """ARMAC with the spec's scheduler (spec.scheduler) and episode recorder (spec.record)."""
  from armac_spiel import config
  from armac_spiel.armac import ARMAC
  scheduler = recorder = None
  if spec.scheduler is not None:
    scheduler = make_scheduler(spec.scheduler, spec.game, spec.seed, device)
  if spec.record is not None:
    from armac_spiel import recording
    recorder = recording.ReplayRecorder(recording.RecorderConfig(**spec.record),
                                        {"scheduler_suite": spec.scheduler})
  return ARMAC(spec.game, config.from_dict(dict(spec.hparams)), spec.seed, device=device,
               scheduler=scheduler, recorder=recorder)
