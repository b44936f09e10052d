"""Seed sweeps over games x algorithms: one run interface, run inline or on Ray.

A `RunTask` names one run (game, algo, seed, budgets) and its directory
`<root>/<game>/<algo>/seed_<s>/`. `LocalWorker.run(task)` trains it in the calling process
and returns a summary; `RayWorker` (`ray.remote(num_cpus=1)(LocalWorker)`, PokerRL style,
built on first use; `ray_worker_class(n)` for n CPUs) is the same class as a Ray actor, so
inline and distributed sweeps share every line of run code. `run_sweep` skips runs whose
directory holds DONE, resumes unfinished ARMAC runs from their checkpoint (baseline runs
restart), and appends one summary per finished run to `<root>/sweep.jsonl` as results
arrive. Workers write run directories themselves, so on a multi-node cluster `<root>` and
the repo must be on a shared filesystem at the same path.

Algorithms: `armac` (scheduler off), `armac_sched_discrete`, `armac_sched_continuous`
(config override `scheduler_mode`), and the baselines of `armac_spiel.baselines`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import traceback
from typing import Callable, Iterable, Optional, Sequence

from absl import logging

from armac_spiel import run_io

ARMAC_ALGOS = {"armac": "off", "armac_sched_discrete": "discrete",
               "armac_sched_continuous": "continuous"}
BASELINE_ALGOS = ("cfr_plus", "es_mccfr", "deep_cfr", "nfsp")
ALGOS = (*ARMAC_ALGOS, *BASELINE_ALGOS)
SWEEP_LOG = "sweep.jsonl"
REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Baselines evaluate on a fixed cadence; this many evaluations per budget by default.
BASELINE_EVALS = 40


def game_dirname(game: str) -> str:
  """A filesystem-safe directory name for a game string (`kuhn_poker(players=3)` ->
  `kuhn_poker_players=3`)."""
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", game).strip("_")


def run_dir(root: str, game: str, algo: str, seed: int) -> str:
  return os.path.join(root, game_dirname(game), algo, f"seed_{seed}")


@dataclasses.dataclass(frozen=True)
class RunTask:
  """One run of a sweep; every field a worker needs, picklable."""
  game: str
  algo: str
  seed: int
  out_dir: str                              # the run directory
  time_budget_s: Optional[float] = None     # training seconds, evaluation excluded
  max_epochs: Optional[int] = None          # ARMAC epoch budget (overrides the config)
  max_steps: Optional[int] = None           # baseline step budget
  armac_config: Optional[str] = None        # ARMAC YAML (default experiments/configs/<game>)
  eval_every_s: Optional[float] = None      # baselines; default budget / BASELINE_EVALS
  eval_every_steps: Optional[int] = None    # baselines; default max_steps / BASELINE_EVALS
  baseline_hparams: Optional[str] = None    # YAML {algo: {hparam: value}} for baselines
  device: str = "cpu"
  threads: int = 1                          # torch intra-op threads in the worker
  plot: bool = True                         # per-run curve.png (ARMAC)

  def __post_init__(self):
    if self.algo not in ALGOS:
      raise ValueError(f"RunTask.algo={self.algo!r}: must be one of {ALGOS}")
    if self.algo in ARMAC_ALGOS and self.time_budget_s is None and self.max_epochs is None:
      if self.armac_config is None:
        raise ValueError(f"RunTask {self.name}: ARMAC needs time_budget_s or max_epochs")
    if self.algo in BASELINE_ALGOS and self.time_budget_s is None and self.max_steps is None:
      raise ValueError(f"RunTask {self.name}: a baseline needs time_budget_s or max_steps")

  @property
  def name(self) -> str:
    return f"{self.game}/{self.algo}/seed_{self.seed}"


def make_tasks(root: str, games: Sequence[str], algos: Sequence[str], seeds: Iterable[int],
               **kw) -> list[RunTask]:
  """The (game, algo, seed) product, game-major, each in its own run directory."""
  root = os.path.abspath(root)
  return [RunTask(g, a, int(s), run_dir(root, g, a, int(s)), **kw)
          for g in games for a in algos for s in seeds]


def parse_seeds(text: str) -> list[int]:
  """`"5"` -> [0, 1, 2, 3, 4]; `"0,3"` -> [0, 3]."""
  text = text.strip()
  if "," in text:
    return [int(s) for s in text.split(",") if s.strip()]
  n = int(text)
  if n < 1:
    raise ValueError(f"--seeds={text!r}: a count must be >= 1 (or give a comma list)")
  return list(range(n))


def is_done(task: RunTask) -> bool:
  return os.path.exists(os.path.join(task.out_dir, "DONE"))


def _last_eval(rows: list[dict]) -> dict:
  keys = ("epoch", "step", "episodes", "train_s", "eval_s", "exploitability", "nash_conv")
  last = rows[-1] if rows else {}
  return {k: last[k] for k in keys if k in last}


class LocalWorker:
  """Runs `RunTask`s in this process; the Ray actor is this class unchanged."""

  def __init__(self, repo_dir: str = REPO_DIR):
    if repo_dir not in sys.path:
      sys.path.insert(0, repo_dir)

  def run(self, task: RunTask) -> dict:
    """Trains `task` into its run directory; returns a summary (never raises)."""
    import torch
    torch.set_num_threads(task.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = {"game": task.game, "algo": task.algo, "seed": task.seed,
               "run_dir": task.out_dir, "pid": os.getpid()}
    try:
      if task.algo in ARMAC_ALGOS:
        rows, resumed = self._run_armac(task)
        summary["resumed"] = resumed
      else:
        rows = self._run_baseline(task)
      self._complete_provenance(task)
      summary.update(status="done", **_last_eval(rows))
    except Exception as e:  # pylint: disable=broad-except
      # One failed run must not end the sweep; the error is reported in sweep.jsonl.
      logging.error("%s failed: %s", task.name, e)
      summary.update(status="failed", error=f"{type(e).__name__}: {e}",
                     traceback=traceback.format_exc())
    summary["wall_s"] = time.perf_counter() - t0
    summary["cpu_s"] = time.process_time() - c0
    return summary

  def _run_armac(self, task: RunTask) -> tuple[list[dict], bool]:
    from armac_spiel import trainer
    from armac_spiel.scheduler_glue import scheduler_factory
    build_spec = getattr(trainer, "build_spec", None)
    if build_spec is None:  # older layout: build_spec lived in the train script only
      from experiments.train import build_spec
    overrides = {"scheduler_mode": ARMAC_ALGOS[task.algo]}
    if task.max_epochs is not None:
      overrides["max_epochs"] = task.max_epochs
    resume = os.path.exists(os.path.join(task.out_dir, trainer.CHECKPOINT))
    spec, suite = build_spec(task.game, task.seed, task.out_dir, task.time_budget_s,
                             task.armac_config, overrides, task.device, resume)
    spec = dataclasses.replace(spec, plot=task.plot)
    spec.extra_config["algo"] = task.algo
    return trainer.train(spec, make_scheduler=scheduler_factory(
        suite, spec.config.scheduler_mode)), resume

  def _run_baseline(self, task: RunTask) -> list[dict]:
    from armac_spiel.baselines import run_baseline
    every_s, every_steps = task.eval_every_s, task.eval_every_steps
    if every_s is None and every_steps is None:
      if task.max_steps is not None:
        every_steps = max(1, task.max_steps // BASELINE_EVALS)
      if task.time_budget_s is not None:
        every_s = task.time_budget_s / BASELINE_EVALS
    hparams = None
    if task.baseline_hparams:
      from armac_spiel import config as config_lib
      hparams = config_lib.load_yaml(task.baseline_hparams).get(task.algo)
    return run_baseline(task.algo, task.game, task.seed, task.out_dir,
                        time_budget_s=task.time_budget_s, max_steps=task.max_steps,
                        eval_every_s=every_s, eval_every_steps=every_steps,
                        device=task.device, hparams=hparams)

  @staticmethod
  def _complete_provenance(task: RunTask) -> None:
    """Adds what the trainers leave out (baselines: seed) plus the sweep task."""
    path = os.path.join(task.out_dir, "provenance.json")
    prov = {}
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        prov = json.load(f)
    if not prov.get("git_commit") or "versions" not in prov:
      prov = {**run_io.provenance(), **{k: v for k, v in prov.items() if v is not None}}
    prov.setdefault("seed", task.seed)
    prov["sweep_task"] = dataclasses.asdict(task)
    run_io.write_json_atomic(path, prov)


def ray_worker_class(num_cpus: float = 1):
  """`LocalWorker` as a Ray actor class holding `num_cpus` CPUs (imports Ray)."""
  import ray
  return ray.remote(num_cpus=num_cpus)(LocalWorker)


def __getattr__(name):
  # `sweep.RayWorker` is `ray.remote(num_cpus=1)(LocalWorker)`, built on first use so that
  # importing this module never imports Ray.
  if name == "RayWorker":
    return ray_worker_class(1)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
  """Starts a local Ray (address None / "local") or connects to `address`; quiet, with the
  repo on the workers' PYTHONPATH. Returns False if Ray was already initialised."""
  import ray
  if ray.is_initialized():
    return False
  path = os.pathsep.join(p for p in (REPO_DIR, os.environ.get("PYTHONPATH")) if p)
  kw = dict(log_to_driver=False, include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
            logging_level="warning")
  if address in (None, "", "local"):
    # Ray starts its workers at niceness 15 by default; beside any other busy process
    # they then starve (measured: a 128x128 MLP step 12x slower). Runs are the work here.
    os.environ.setdefault("RAY_worker_niceness", "0")
    kw.update(address="local", num_cpus=num_cpus,
              object_store_memory=200 * 1024 * 1024)
  else:
    kw["address"] = address
  ray.init(**kw)
  return True


def _record(root: str, summary: dict) -> None:
  os.makedirs(root, exist_ok=True)
  line = json.dumps({k: v for k, v in summary.items() if k != "traceback"}) + "\n"
  with open(os.path.join(root, SWEEP_LOG), "a", encoding="utf-8") as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())


def _log_progress(i: int, n: int, s: dict) -> None:
  expl = s.get("exploitability")
  logging.info("[%d/%d] %s %s/%s/seed_%d%s%s", i, n, s["status"], s["game"], s["algo"],
               s["seed"], "" if expl is None else f"  expl={expl:.4g}",
               f"  ({s['wall_s']:.1f}s)" if "wall_s" in s else "")


def run_sweep(tasks: Sequence[RunTask], root: str, ray_address: Optional[str] = "local",
              num_cpus: Optional[int] = None, cpus_per_task: float = 1,
              on_result: Optional[Callable[[dict], None]] = None) -> list[dict]:
  """Runs every task not yet DONE; returns summaries (skipped ones included) in finish order.

  `ray_address`: "none" runs inline without importing Ray; None / "local" starts a local Ray
  with `num_cpus` CPUs (default: all); anything else ("auto", "HOST:PORT") connects to that
  cluster. Each finished task appends its summary to `<root>/sweep.jsonl`.
  """
  root = os.path.abspath(root)
  os.makedirs(root, exist_ok=True)
  out, todo = [], []
  for t in tasks:
    if is_done(t):
      out.append({"game": t.game, "algo": t.algo, "seed": t.seed, "run_dir": t.out_dir,
                  "status": "skipped"})
      _log_progress(len(out), len(tasks), out[-1])
    else:
      todo.append(t)
  n = len(tasks)

  def finished(s):
    _record(root, s)
    out.append(s)
    _log_progress(len(out), n, s)
    if on_result is not None:
      on_result(s)

  if not todo:
    return out
  if ray_address == "none":
    worker = LocalWorker()
    for t in todo:
      finished(worker.run(t))
    return out

  import ray
  started = init_ray(ray_address, num_cpus)
  try:
    cpus = ray.cluster_resources().get("CPU", 1)
    n_actors = max(1, min(len(todo), int(cpus // cpus_per_task)))
    logging.info("Ray: %g CPUs, %d workers of %g CPU for %d runs", cpus, n_actors,
                 cpus_per_task, len(todo))
    cls = ray_worker_class(cpus_per_task)
    actors = [cls.remote(REPO_DIR) for _ in range(n_actors)]
    queue = list(todo)
    pending = {}

    def submit(actor, task):
      pending[actor.run.remote(task)] = (actor, task)

    for a in actors:
      if queue:
        submit(a, queue.pop(0))
    while pending:
      (ref,), _ = ray.wait(list(pending), num_returns=1)
      actor, task = pending.pop(ref)
      try:
        finished(ray.get(ref))
      except ray.exceptions.RayError as e:  # the worker process died (OOM, node lost)
        finished({"game": task.game, "algo": task.algo, "seed": task.seed,
                  "run_dir": task.out_dir, "status": "failed",
                  "error": f"{type(e).__name__}: {e}"})
        actors.remove(actor)
        actor = cls.remote(REPO_DIR)
        actors.append(actor)
      if queue:
        submit(actor, queue.pop(0))
    for a in actors:
      ray.kill(a)
  finally:
    if started:
      ray.shutdown()
  return out


def write_sweep_info(root: str, info: dict) -> None:
  """`<root>/sweep_info.json`: the sweep's arguments and the driver's provenance."""
  os.makedirs(root, exist_ok=True)
  run_io.write_json_atomic(os.path.join(root, "sweep_info.json"),
                           {**info, "provenance": run_io.provenance()})

