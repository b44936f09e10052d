"""The run layer: one spec, one loop, run directories, sweeps and curves.

- `resolve_spec` / `RunSpec` (spec.py): defaults < YAML < --set < flags, one error type;
- `run` (loop.py): the one training loop for every Learner, resumable;
- `load_run`: a finished (or interrupted) run directory back as a trained learner;
- rundir.py (files of a run), sweep.py (grids of runs, inline or on Ray), curves.py
  (step curves, values at given times, bootstrap bands, tables).
"""

from __future__ import annotations

import os

from armac_spiel.learner import register_learner
from armac_spiel.runs import rundir
from armac_spiel.runs.loop import build_learner, run
from armac_spiel.runs.spec import RunSpec, resolve_spec

__all__ = ["RunSpec", "resolve_spec", "run", "load_run", "register_learner", "spec_from_dir"]


def spec_from_dir(out_dir: str) -> RunSpec:
  """The RunSpec a run directory was trained with (its config.json)."""
  path = os.path.join(out_dir, rundir.CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{out_dir}: no {rundir.CONFIG}; not a run directory")
  d = rundir.read_json(path)
  missing = {"algo", "learner", "game", "seed", "hparams"} - set(d)
  if missing:
    raise rundir.CheckpointError(f"{path}: missing fields {sorted(missing)}; written by an "
                                 "older version? retrain the run to regenerate it")
  return RunSpec.from_dict(d, where=path)


def load_run(out_dir: str, device: str = "cpu"):
  """The learner of a run directory, restored from its checkpoint (the state after its last
  evaluation, which is the final state of a finished run). `learner.average_policy()` is
  an OpenSpiel `policy.Policy`."""
  spec = spec_from_dir(out_dir).replace(out_dir=out_dir, device=device)
  ck = rundir.load_checkpoint(os.path.join(out_dir, rundir.CHECKPOINT))
  if ck.get("spec") != spec.identity():
    raise rundir.CheckpointError(f"{out_dir}: checkpoint and config.json disagree")
  learner = build_learner(spec, device)
  learner.load_state_dict(ck["learner"])
  return learner
