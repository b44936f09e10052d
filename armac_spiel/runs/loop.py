"""The one run loop, for every Learner: budgets, evaluation, metrics, checkpoints, resume.

`run(spec)` trains `spec.learner` until `spec.time_budget_s` training seconds (evaluation
excluded) or `spec.max_steps` steps, whichever comes first. It evaluates (exactly, or by
sampled play per `spec.evaluation`: armac_spiel.approx.in_run) every `spec.eval_every`
steps and/or every
`spec.eval_every_s` training seconds, at the start when the learner asks for it
(`eval_at_start`), and at the end. Each evaluation appends one line to metrics.jsonl:
the learner's counters, the clocks, the evaluation, the last step's losses and the rates.

Evaluation budget. With `spec.eval_fraction` = f (the default cadence: f = 0.1, see
armac_spiel.runs.spec), an evaluation that the cadence makes due waits, step after step,
until it fits: the seconds of the evaluations so far, of this one and of the final one (each
estimated by the last one's, `eval_s_last`) at most f of the run's seconds (training and
evaluation, `train_s + eval_s`), and not when the final one is nearer than half the stretch
since the last (`final_is_near`). The first and the last evaluations always happen. What a
run computes does not depend on it (evaluation changes nothing that training reads); which
steps are evaluated does, since it follows the clocks. Each line reports `eval_s_last` and
`eval_fraction` (eval_s / (train_s + eval_s)); with f None the cadence is fixed. Each
evaluation runs under the deadline that keeps it within f (`evaluation_deadline`): what it
must measure it measures, and its optional parts (the scheduler's best-global-lambda
control) stay out past it.

Resume. After each evaluation the checkpoint is written (atomically) with the learner, the
loop's clocks and the line it belongs to (`pending`); the line is appended after. On
resume the metrics file holds either every line up to and including `pending` (extra
lines cannot exist) or one fewer, and then `pending` is appended. Nothing logged is lost
or written twice, and the resumed run continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Callable, Optional, Sequence

from absl import logging

from armac_spiel import evaluation, policy_io
from armac_spiel.approx import in_run
from armac_spiel.atomic import atomic_write_text
from armac_spiel.learner import learner_entry
from armac_spiel.params import ConfigError
from armac_spiel.runs import plots, rundir
from armac_spiel.runs.lock import RunLock, read_lock
from armac_spiel.runs.spec import RunSpec, check_budgets, resolve_device


def build_learner(spec: RunSpec, device: Optional[str] = None):
  """The spec's learner, untrained, on `device` (default: the spec's, resolved)."""
  return learner_entry(spec.learner).build(spec, device or resolve_device(spec.device))


def run(spec: RunSpec, on_step: Optional[Callable] = None,
        loggers: Sequence = ()) -> list[dict]:
  """Trains the run of `spec` into `spec.out_dir`; returns its metrics lines.

  `on_step(learner)` is called after every step; each of `loggers` gets `write(line)` for
  every metrics line and `close()` at the end (progress display, TensorBoard). The run
  directory is locked (armac_spiel.runs.lock) unless this process holds its lock already.
  """
  check_budgets(spec.time_budget_s, spec.max_steps, spec.eval_every, spec.eval_every_s)
  os.makedirs(spec.out_dir, exist_ok=True)
  holder = read_lock(spec.out_dir) or {}
  mine = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
  with contextlib.nullcontext() if mine else RunLock(spec.out_dir):
    return _run(spec, on_step, loggers)


def _run(spec: RunSpec, on_step, loggers) -> list[dict]:
  device = resolve_device(spec.device)
  out = spec.out_dir
  ckpt_path = os.path.join(out, rundir.CHECKPOINT)
  metrics_path = os.path.join(out, rundir.METRICS)
  if os.path.exists(ckpt_path) and not spec.resume:
    raise ConfigError(f"--out_dir={out} already holds a run (checkpoint.pt); pass "
                      "--resume to continue it or choose a new --out_dir")
  learner = build_learner(spec, device)
  clock = {"steps": 0, "train_s": 0.0, "eval_s": 0.0, "n_lines": 0, "last_eval_step": 0,
           "last_eval_train_s": 0.0, "last_eval_episodes": 0, "eval_s_last": 0.0,
           "approx_s": 0.0}
  if spec.resume and os.path.exists(ckpt_path):
    ck = rundir.load_checkpoint(ckpt_path)
    if ck.get("spec") != spec.identity():
      raise rundir.CheckpointError(
          f"checkpoint {ckpt_path} was written for a different run (algorithm, game, seed, "
          "hyper-parameters or scheduler differ); resume with the config of the original run")
    learner.load_state_dict(ck["learner"])
    clock.update(ck["clock"])
    _reconcile_metrics(metrics_path, clock["n_lines"], ck["pending"])
    logging.info("resumed %s at step %d (%d metrics lines)", out, clock["steps"],
                 clock["n_lines"])
  else:
    for name in (rundir.METRICS, rundir.DONE):
      if os.path.exists(os.path.join(out, name)):
        os.unlink(os.path.join(out, name))
    rundir.write_json_atomic(os.path.join(out, rundir.CONFIG),
                             {**spec.to_dict(), "device": device})
    rundir.write_json_atomic(os.path.join(out, "provenance.json"),
                             {**rundir.provenance(), "seed": spec.seed})

  log = rundir.MetricsLog(metrics_path)
  losses: dict = {}

  def evaluate_and_checkpoint():
    t0 = time.perf_counter()
    with evaluation.deadline(evaluation_deadline(clock, spec.eval_fraction, t0)):
      ev = in_run.evaluate_learner(learner, spec.evaluation,
                                   spec.seed + 7919 * clock["n_lines"], clock["train_s"],
                                   clock["approx_s"])
    clock["approx_s"] += ev.get("approx_s", 0.0)
    clock["eval_s_last"] = time.perf_counter() - t0
    clock["eval_s"] += clock["eval_s_last"]
    dt = clock["train_s"] - clock["last_eval_train_s"]
    steps = clock["steps"] - clock["last_eval_step"]
    episodes = learner.episodes - clock["last_eval_episodes"]
    counters = getattr(learner, "counters", None)
    head = counters() if counters else {"step": clock["steps"], "episodes": learner.episodes}
    line = {**head, "train_s": clock["train_s"], "eval_s": clock["eval_s"],
            "eval_s_last": clock["eval_s_last"], "eval_fraction": eval_fraction(clock),
            **ev, **losses, "steps_per_s": steps / dt if dt > 0 else 0.0,
            "episodes_per_s": episodes / dt if dt > 0 else 0.0, "time": time.time()}
    clock.update(n_lines=clock["n_lines"] + 1, last_eval_step=clock["steps"],
                 last_eval_train_s=clock["train_s"], last_eval_episodes=learner.episodes)
    rundir.save_checkpoint(ckpt_path, {"learner": learner.state_dict(), "clock": dict(clock),
                                       "pending": line, "spec": spec.identity()})
    log.write(line)
    for lg in loggers:
      lg.write(line)
    logging.info("%s step %d  episodes %d  train %.1fs  expl %s  current %s  %.3g steps/s",
                 spec.algo, clock["steps"], learner.episodes, clock["train_s"],
                 _fmt(line.get("exploitability")), _fmt(line.get("exploitability_current")),
                 line["steps_per_s"])

  if clock["n_lines"] == 0 and getattr(learner, "eval_at_start", False):
    evaluate_and_checkpoint()
  while True:
    if spec.time_budget_s is not None and clock["train_s"] >= spec.time_budget_s:
      break
    if spec.max_steps and clock["steps"] >= spec.max_steps:
      break
    t0 = time.perf_counter()
    losses = learner.step() or {}
    clock["train_s"] += time.perf_counter() - t0
    clock["steps"] += 1
    if on_step is not None:
      on_step(learner)
    since = clock["steps"] - clock["last_eval_step"]
    if ((spec.eval_every and since >= spec.eval_every) or
        (spec.eval_every_s and
         clock["train_s"] - clock["last_eval_train_s"] >= spec.eval_every_s)) and \
        within_budget(clock, spec.eval_fraction) and \
        not (spec.eval_fraction and final_is_near(clock, spec.time_budget_s, spec.max_steps)):
      evaluate_and_checkpoint()
  if clock["steps"] > clock["last_eval_step"] or clock["n_lines"] == 0:
    evaluate_and_checkpoint()
  log.close()
  for lg in loggers:
    lg.close()
  finish(spec, learner)
  return rundir.read_metrics(metrics_path)


def eval_fraction(clock: dict) -> float:
  """Share of the run's seconds so far (training and evaluation) spent evaluating."""
  total = clock["train_s"] + clock["eval_s"]
  return clock["eval_s"] / total if total > 0 else 0.0


def evaluation_deadline(clock: dict, fraction: Optional[float], t0: float) -> Optional[float]:
  """perf_counter time by which an evaluation started at `t0` keeps the evaluations within
  `fraction` of the run's seconds (its optional parts stay out past it: see
  armac_spiel.evaluation.deadline); None when `fraction` is None."""
  if fraction is None:
    return None
  room = (fraction * (clock["train_s"] + clock["eval_s"]) - clock["eval_s"]) / (1 - fraction)
  return t0 + max(0.0, room)


def final_is_near(clock: dict, time_budget_s: Optional[float],
                  max_steps: Optional[int]) -> bool:
  """Whether the final evaluation comes sooner than half the stretch since the last one (in
  training seconds and in steps, by whichever budget ends the run): with the default
  cadence a due evaluation then waits for the final one, which costs the budget no less
  and shows the curve little more."""
  near = []
  if time_budget_s is not None:
    near.append(time_budget_s - clock["train_s"] <
                (clock["train_s"] - clock["last_eval_train_s"]) / 2)
  if max_steps:
    near.append(max_steps - clock["steps"] < (clock["steps"] - clock["last_eval_step"]) / 2)
  return any(near)


def within_budget(clock: dict, fraction: Optional[float]) -> bool:
  """Whether a due evaluation fits the budget now (module docstring): the evaluations so
  far, the next and the final one (each costing the last one's seconds) within `fraction`
  of the run's seconds; always when `fraction` is None."""
  if fraction is None:
    return True
  extra = 2 * clock["eval_s_last"]
  return clock["eval_s"] + extra <= fraction * (clock["train_s"] + clock["eval_s"] + extra)


def _reconcile_metrics(path: str, n_lines: int, pending: dict) -> None:
  lines = rundir.read_metrics(path)
  if len(lines) >= n_lines:
    rundir.truncate_metrics(path, n_lines)
  elif len(lines) == n_lines - 1:
    with rundir.MetricsLog(path) as log:
      log.write(pending)
  else:
    raise rundir.CheckpointError(f"{path} has {len(lines)} lines but the checkpoint expects "
                                 f"{n_lines}; the run directory was modified")


def finish(spec: RunSpec, learner) -> None:
  """policy.json (the average policy) and the learner's own exports (not for a game too
  large to tabulate), curve.png and DONE."""
  if (in_run.resolve_method(spec.evaluation, spec.game) == "exact" or
      in_run.enumerable(spec.game)):
    policy_io.export_policy(os.path.join(spec.out_dir, "policy.json"), spec.game,
                            learner.average_table())
    export = getattr(learner, "export", None)
    if export is not None:
      export(spec.out_dir)
  else:  # its policy stays in checkpoint.pt (armac_spiel.runs.load_run)
    logging.info("%s: too large to write policy tables; no policy.json", spec.game)
  if spec.plot:  # matplotlib is imported here only (armac_spiel.runs.plots)
    plots.plot_run(spec.out_dir, spec.game)
  atomic_write_text(os.path.join(spec.out_dir, rundir.DONE), "")


def _fmt(x) -> str:
  return "n/a" if x is None else f"{x:.4f}"
