"""The training loop of one run: budget, exact evaluation, metrics, checkpoints, resume.

Run directory D:
- config.json (resolved config), provenance.json (commit, versions, machine, seed);
- metrics.jsonl, one line per evaluation;
- checkpoint.pt, written atomically after each evaluation;
- at the end policy.json (average policy, armac-spiel/policy-v1), with a scheduler
  policy_mixed.json (its deployed pi_mix), curve.png and DONE.

Resume. The checkpoint holds the learner, the clocks and the evaluation line it belongs to
(`pending`). The line is appended after the checkpoint is written, so on resume the metrics
file holds either every line up to and including `pending` (extra lines cannot exist) or
one fewer, and then `pending` is appended. Nothing logged is lost or written twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Callable

import torch
from absl import logging

from armac_spiel import plotting, policy_io, run_io
from armac_spiel.armac import ARMAC
from armac_spiel.atomic import atomic_torch_save, atomic_write_text
from armac_spiel import config as config_lib
from armac_spiel.config import ARMACConfig, ConfigError

CHECKPOINT = "checkpoint.pt"
DEVICES = ("auto", "cpu", "cuda")


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read or does not belong to this run."""


def resolve_device(device: str) -> str:
  if device not in DEVICES and not device.startswith("cuda:"):
    raise ConfigError(f"--device={device!r}: must be one of {DEVICES} (or cuda:N)")
  if device == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  if device.startswith("cuda") and not torch.cuda.is_available():
    raise ConfigError(f"--device={device!r}: CUDA is not available on this machine; "
                      "use --device=cpu or --device=auto")
  return device


@dataclasses.dataclass
class RunSpec:
  game_string: str
  config: ARMACConfig
  seed: int
  out_dir: str
  time_budget_s: float | None = None
  device: str = "auto"
  resume: bool = False
  extra_config: dict = dataclasses.field(default_factory=dict)  # e.g. scheduler sections
  plot: bool = True


def load_checkpoint(path: str) -> dict:
  try:
    return torch.load(path, map_location="cpu", weights_only=False)
  except Exception as e:  # torch raises several types for truncated / foreign files
    raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: "
                          f"{e}); delete it to start over") from e


def evaluate_learner(learner: ARMAC, extra: Callable[[ARMAC], dict] | None = None) -> dict:
  """Exact exploitability / NashConv of the average and current policies."""
  g = learner.game_string
  expl, nc = run_io.fast_exploitability(g, learner.average_policy().table())
  expl_cur, nc_cur = run_io.fast_exploitability(g, learner.current_policy().table())
  out = {"nash_conv": nc, "nash_conv_current": nc_cur}
  if expl is not None:
    out["exploitability"] = expl
    out["exploitability_current"] = expl_cur
  if extra is not None:
    out.update(extra(learner))
  return out


def train(spec: RunSpec, make_scheduler=None, make_recorder=None, on_epoch=None) -> list[dict]:
  """Trains until the budget (train time, evaluation excluded) or config.max_epochs."""
  cfg = spec.config
  if spec.time_budget_s is None and cfg.max_epochs == 0:
    raise ConfigError("give a time budget (--time_budget_s) or an epoch budget "
                      "(config max_epochs), or both")
  device = resolve_device(spec.device)
  os.makedirs(spec.out_dir, exist_ok=True)
  ckpt_path = os.path.join(spec.out_dir, CHECKPOINT)
  metrics_path = os.path.join(spec.out_dir, "metrics.jsonl")
  if os.path.exists(ckpt_path) and not spec.resume:
    raise ConfigError(f"--out_dir={spec.out_dir} already holds a run (checkpoint.pt); pass "
                      "--resume to continue it or choose a new --out_dir")
  scheduler = (make_scheduler(spec.game_string, spec.seed, device)
               if make_scheduler is not None else None)
  if scheduler is not None:  # recorded in config.json and in replay policy files
    spec.extra_config.update(scheduler.config_entries())
  recorder = make_recorder(spec) if make_recorder is not None else None
  learner = ARMAC(spec.game_string, cfg, spec.seed, device=device, scheduler=scheduler,
                  recorder=recorder)
  resolved = {"game": spec.game_string, "seed": spec.seed, "device": device,
              "time_budget_s": spec.time_budget_s, "armac": cfg.to_dict(),
              **spec.extra_config}
  train_s = eval_s = 0.0
  n_lines = 0
  if spec.resume and os.path.exists(ckpt_path):
    ck = load_checkpoint(ckpt_path)
    if ck.get("resolved_config", {}).get("armac") != json.loads(json.dumps(cfg.to_dict())):
      raise CheckpointError(f"checkpoint {ckpt_path} was written with a different config; "
                            "resume with the config of the original run")
    learner.load_state_dict(ck["learner"])
    train_s, eval_s, n_lines = ck["train_s"], ck["eval_s"], ck["n_lines"]
    lines = run_io.read_metrics(metrics_path)
    if len(lines) >= n_lines:
      run_io.truncate_metrics(metrics_path, n_lines)
    elif len(lines) == n_lines - 1:
      run_io.MetricsLog(metrics_path).write(ck["pending"])
    else:
      raise CheckpointError(f"{metrics_path} has {len(lines)} lines but the checkpoint "
                            f"expects {n_lines}; the run directory was modified")
    logging.info("resumed %s at epoch %d (%d metrics lines)", spec.out_dir, learner.epoch,
                 n_lines)
  else:
    if os.path.exists(metrics_path):
      os.unlink(metrics_path)
    run_io.write_json_atomic(os.path.join(spec.out_dir, "config.json"), resolved)
    run_io.write_json_atomic(os.path.join(spec.out_dir, "provenance.json"),
                             {**run_io.provenance(), "seed": spec.seed})

  log = run_io.MetricsLog(metrics_path)
  stats = {"epochs": 0, "t": 0.0}

  def evaluate_and_checkpoint():
    nonlocal eval_s, n_lines
    t0 = time.perf_counter()
    ev = evaluate_learner(learner, getattr(scheduler, "metrics", None))
    dt = time.perf_counter() - t0
    eval_s += dt
    rate = stats["epochs"] / stats["t"] if stats["t"] > 0 else 0.0
    line = {"epoch": learner.epoch, "episodes": learner.episodes, "train_s": train_s,
            "eval_s": eval_s, **ev, **learner.last_losses, "steps_per_s": rate,
            "episodes_per_s": rate * cfg.episodes_per_epoch}
    n_lines += 1
    atomic_torch_save({"learner": learner.state_dict(), "train_s": train_s,
                       "eval_s": eval_s, "n_lines": n_lines, "pending": line,
                       "resolved_config": json.loads(json.dumps(resolved))}, ckpt_path)
    log.write(line)
    stats["epochs"], stats["t"] = 0, 0.0
    logging.info("epoch %d  episodes %d  train %.1fs  expl %s  current %s  %.1f epochs/s",
                 learner.epoch, learner.episodes, train_s,
                 _fmt(line.get("exploitability")), _fmt(line.get("exploitability_current")),
                 rate)

  if n_lines == 0:
    evaluate_and_checkpoint()
  while True:
    if spec.time_budget_s is not None and train_s >= spec.time_budget_s:
      break
    if cfg.max_epochs and learner.epoch >= cfg.max_epochs:
      break
    t0 = time.perf_counter()
    learner.run_epoch()
    dt = time.perf_counter() - t0
    train_s += dt
    stats["epochs"] += 1
    stats["t"] += dt
    if on_epoch is not None:
      on_epoch(learner)
    if learner.epoch % cfg.eval_every == 0:
      evaluate_and_checkpoint()
  if stats["epochs"]:
    evaluate_and_checkpoint()
  log.close()
  finish(spec, learner)
  return run_io.read_metrics(metrics_path)


def finish(spec: RunSpec, learner: ARMAC) -> None:
  policy_io.export_policy(os.path.join(spec.out_dir, "policy.json"), spec.game_string,
                          learner.average_policy().table())
  if learner.scheduler is not None and hasattr(learner.scheduler, "export"):
    learner.scheduler.export(spec.out_dir, learner)  # policy_mixed.json
  if spec.plot:
    plotting.plot_run(spec.out_dir, spec.game_string)
  atomic_write_text(os.path.join(spec.out_dir, "DONE"), "")


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "configs")


def default_config_path(game_name: str) -> str | None:
  path = os.path.join(CONFIG_DIR, re.sub(r"\(.*", "", game_name) + ".yaml")
  return path if os.path.exists(path) else None


def build_spec(game_name, seed, out_dir, time_budget_s=None, config_path=None,
               overrides=None, device="auto", resume=False):
  """Resolves dataclass defaults < YAML < overrides into a RunSpec (shared with sweeps)."""
  from games import load_game
  load_game(game_name)
  path = config_path or default_config_path(game_name)
  raw = config_lib.load_yaml(path) if path else {}
  from armac_spiel.scheduler_glue import split_config
  armac_keys, sched = split_config(raw, where=path or "config")
  cfg = config_lib.from_dict(armac_keys, where=path or "config")
  cfg = config_lib.from_dict(overrides or {}, base=cfg, where="flags")
  extra = {"config_file": path}
  if sched is not None:
    extra["scheduler_suite"] = sched.to_dict()
  return RunSpec(game_string=game_name, config=cfg, seed=seed, out_dir=out_dir,
                 time_budget_s=time_budget_s, device=device, resume=resume,
                 extra_config=extra), sched


def _fmt(x) -> str:
  return "n/a" if x is None else f"{x:.4f}"
