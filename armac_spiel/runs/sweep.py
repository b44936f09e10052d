"""Seed sweeps over games x algorithms, run inline or on Ray, through the one run loop.

A `RunTask` names one run (game, algo, seed, budgets) and its directory
`<root>/<game>/<algo>/seed_<s>/`. `LocalWorker.run(task)` resolves it into a RunSpec and
trains it in the calling process (armac_spiel.runs.loop.run), returning a summary;
`RayWorker` (`ray.remote(num_cpus=1)(LocalWorker)`, PokerRL style, built on first use;
`ray_worker_class(n)` for n CPUs) is the same class as a Ray actor, so inline and
distributed sweeps share every line of run code. `run_sweep` skips runs whose directory
holds DONE, resumes unfinished runs from their checkpoint, and appends one summary per
finished run to `<root>/sweep.jsonl` as results arrive. Workers write run directories
themselves, so on a multi-node cluster `<root>` and the repo must be on a shared
filesystem at the same path.

Algorithms: every registered learner (armac_spiel.learner: `armac`, the baselines of
armac_spiel.baselines, and any a user registers) and the aliases of
armac_spiel.runs.spec (`armac_sched_discrete`, `armac_sched_continuous`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, Iterable, Optional, Sequence

import torch
from absl import logging

from armac_spiel import progress, tensorboard
from armac_spiel.learner import algorithm_names, import_learner_modules
from armac_spiel.params import ConfigError
from armac_spiel.runs import rundir
from armac_spiel.runs.lock import RunLock
from armac_spiel.runs.loop import run
from armac_spiel.runs.spec import ALIASES, RunSpec, resolve_spec

SWEEP_LOG = "sweep.jsonl"
RUN_LOG = "run.log"  # per run directory: the run's log lines, and its traceback if it failed
REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Baselines evaluate on a fixed cadence; this many evaluations per budget by default.
BASELINE_EVALS = 40


def known_algorithms() -> list[str]:
  return algorithm_names() + sorted(ALIASES)


def learner_of(algo: str) -> str:
  return ALIASES.get(algo, (algo,))[0]


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
  max_steps: Optional[int] = None           # step budget of the other algorithms
  armac_config: Optional[str] = None        # ARMAC YAML (default experiments/configs/<game>)
  eval_every_s: Optional[float] = None      # every algorithm (ARMAC: besides its config's
                                            # eval_every epochs, at a fixed cadence);
                                            # baselines default budget / BASELINE_EVALS
  eval_every_steps: Optional[int] = None    # baselines; default max_steps / BASELINE_EVALS
  baseline_hparams: Optional[str] = None    # YAML {algo: {hparam: value}} for baselines
  device: str = "cpu"
  threads: int = 1                          # torch intra-op threads in the worker
  plot: bool = True                         # per-run curve.png
  tensorboard: bool = False                 # per-run TensorBoard event files

  def __post_init__(self):
    known = known_algorithms()
    if self.algo not in known:
      raise ConfigError(f"--algos: unknown algorithm {self.algo!r}; known: {known}")
    for flag, v in (("--time_budget_s", self.time_budget_s),
                    ("--eval_every_s", self.eval_every_s)):
      if v is not None and not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{flag}={v}: must be a positive number of seconds")
    for flag, v in (("--max_epochs", self.max_epochs), ("--max_steps", self.max_steps)):
      if v is not None and v < 0:
        raise ConfigError(f"{flag}={v}: must be >= 0 (0: no step limit)")
    if self.eval_every_steps is not None and self.eval_every_steps < 1:
      raise ConfigError(f"--eval_every_steps={self.eval_every_steps}: must be a positive "
                        "number of steps")
    armac = learner_of(self.algo) == "armac"
    if armac and self.time_budget_s is None and self.max_epochs is None:
      if self.armac_config is None:
        raise ConfigError(f"RunTask {self.name}: ARMAC needs time_budget_s or max_epochs")
    if not armac and self.time_budget_s is None and self.max_steps is None:
      raise ConfigError(f"RunTask {self.name}: {self.algo} needs time_budget_s or max_steps")

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


def task_spec(task: RunTask) -> RunSpec:
  """The RunSpec of a task; it resumes when the run directory holds a checkpoint."""
  armac = learner_of(task.algo) == "armac"
  every_s, every_steps = task.eval_every_s, task.eval_every_steps
  if not armac and every_s is None and every_steps is None:
    if task.max_steps is not None:
      every_steps = max(1, task.max_steps // BASELINE_EVALS)
    if task.time_budget_s is not None:
      every_s = task.time_budget_s / BASELINE_EVALS
  resume = os.path.exists(os.path.join(task.out_dir, rundir.CHECKPOINT))
  return resolve_spec(
      task.algo, task.game, task.seed, task.out_dir,
      config_path=task.armac_config if armac else task.baseline_hparams,
      config_flag="--armac_config" if armac else "--baseline_hparams",
      time_budget_s=task.time_budget_s,
      max_steps=task.max_epochs if armac else task.max_steps,
      eval_every=None if armac else every_steps, eval_every_s=every_s,
      device=task.device, resume=resume, plot=task.plot)


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

  def run(self, task: RunTask, log_file: bool = True) -> dict:
    """Trains `task` into its run directory; returns a summary (never raises).

    The run holds the directory's lock (armac_spiel.runs.lock) and, with `log_file`, its
    log lines (and a failure's traceback) are appended to `<run_dir>/run.log`."""
    torch.set_num_threads(task.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    log_path = os.path.join(task.out_dir, RUN_LOG)
    summary = {"game": task.game, "algo": task.algo, "seed": task.seed,
               "run_dir": task.out_dir, "log": log_path, "pid": os.getpid()}
    handler = _log_to(log_path) if log_file else None
    try:
      spec = task_spec(task)
      summary["resumed"] = spec.resume
      with RunLock(task.out_dir):
        loggers = []
        if task.tensorboard:
          loggers.append(tensorboard.for_run(spec))
        try:
          rows = run(spec, loggers=loggers)
        finally:
          for lg in loggers:  # closing twice is harmless; a failed run keeps its events
            lg.close()
        self._complete_provenance(task)
      summary.update(status="done", **_last_eval(rows))
    except Exception as e:  # pylint: disable=broad-except
      # One failed run must not end the sweep; the error is reported in sweep.jsonl.
      logging.error("%s failed: %s\n%s", task.name, e, traceback.format_exc())
      summary.update(status="failed", error=f"{type(e).__name__}: {e}",
                     traceback=traceback.format_exc())
    finally:
      if handler is not None:
        logging.get_absl_logger().removeHandler(handler)
        handler.close()
    summary["wall_s"] = time.perf_counter() - t0
    summary["cpu_s"] = time.process_time() - c0
    return summary

  @staticmethod
  def _complete_provenance(task: RunTask) -> None:
    """Adds what the trainers leave out (baselines: seed) plus the sweep task."""
    path = os.path.join(task.out_dir, "provenance.json")
    prov = {}
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        prov = json.load(f)
    if not prov.get("git_commit") or "versions" not in prov:
      prov = {**rundir.provenance(), **{k: v for k, v in prov.items() if v is not None}}
    prov.setdefault("seed", task.seed)
    prov["sweep_task"] = dataclasses.asdict(task)
    rundir.write_json_atomic(path, prov)


def _log_to(path: str):
  """A handler appending absl's log lines to `path` (removed by the caller)."""
  import logging as std_logging
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handler = std_logging.FileHandler(path, encoding="utf-8")
  handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  logging.get_absl_logger().addHandler(handler)
  return handler


def _exit_reason(code: int) -> str:
  if code < 0:
    try:
      name = signal.Signals(-code).name
    except ValueError:
      name = f"signal {-code}"
    return f"the run process was killed by {name}"
  return f"the run process exited with status {code} without a summary"


def run_isolated(task: RunTask, learner_modules: Sequence[str] = ()) -> dict:
  """Trains `task` in a child Python process; returns its summary (never raises).

  The child's stdout and stderr are appended to `<run_dir>/run.log`. A child that dies
  (SIGKILL, out of memory, a crash in native code) gives a failed summary naming the
  signal or exit status; the caller goes on. `learner_modules` are imported in the child
  first (learners registered by the user's code)."""
  t0 = time.perf_counter()
  os.makedirs(task.out_dir, exist_ok=True)
  log_path = os.path.join(task.out_dir, RUN_LOG)
  with tempfile.TemporaryDirectory(prefix="sweep-task-") as d:
    task_path, out_path = os.path.join(d, "task.json"), os.path.join(d, "summary.json")
    with open(task_path, "w", encoding="utf-8") as f:
      json.dump(dataclasses.asdict(task), f)
    cmd = [sys.executable, "-c", "import sys; from armac_spiel.runs.sweep import _child_main; "
           "sys.exit(_child_main(sys.argv[1:]))", task_path, out_path, *learner_modules]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_DIR, env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
      log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {task.name}\n"
                .encode())
      log.flush()
      proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_DIR)
    summary = None
    if os.path.exists(out_path):
      with open(out_path, encoding="utf-8") as f:
        summary = json.load(f)
  if summary is None:
    summary = {"game": task.game, "algo": task.algo, "seed": task.seed,
               "run_dir": task.out_dir, "pid": None, "status": "failed",
               "error": _exit_reason(proc.returncode), "wall_s": time.perf_counter() - t0}
  summary["log"] = log_path
  return summary


def _child_main(argv: list[str]) -> int:
  """Entry of run_isolated's child: argv = [task.json, summary.json, *learner_modules]."""
  task_path, out_path, modules = argv[0], argv[1], argv[2:]
  import_learner_modules(modules)
  with open(task_path, encoding="utf-8") as f:
    task = RunTask(**json.load(f))
  summary = LocalWorker().run(task, log_file=False)
  if summary.get("traceback"):
    print(summary["traceback"], file=sys.stderr)
  rundir.write_json_atomic(out_path, summary)
  return 0


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
              on_result: Optional[Callable[[dict], None]] = None, isolate: bool = False,
              learner_modules: Sequence[str] = (), progress=None) -> list[dict]:
  """Runs every task not yet DONE; returns summaries (skipped ones included) in finish order.

  `progress.update(done, running, failed)` (armac_spiel.progress.SweepProgress) follows the
  runs; skipped runs count as done.

  `ray_address`: "none" runs inline without importing Ray; None / "local" starts a local Ray
  with `num_cpus` CPUs (default: all); anything else ("auto", "HOST:PORT") connects to that
  cluster. Each finished task appends its summary to `<root>/sweep.jsonl`.

  Failures are isolated: a run that raises, or whose process is killed, is recorded with
  status "failed", its error and its log path (`<run_dir>/run.log`), and the other runs go
  on. Inline, a run shares the sweep's process unless `isolate` (run_isolated: one child
  process per run, importing `learner_modules`); on Ray each run is in a worker process.
  Running the sweep again skips the runs with DONE, so it retries only the failed and
  unfinished ones (resumed from their checkpoints).
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
  running = [0]

  def show():
    if progress is not None:
      failed = sum(s["status"] == "failed" for s in out)
      progress.update(len(out) - failed, running[0], failed)

  def finished(s):
    _record(root, s)
    out.append(s)
    _log_progress(len(out), n, s)
    if on_result is not None:
      on_result(s)

  if not todo:
    show()
    return out
  if ray_address == "none":
    worker = LocalWorker()
    for t in todo:
      running[0] = 1
      show()
      finished(run_isolated(t, learner_modules) if isolate else worker.run(t))
    running[0] = 0
    show()
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
      running[0] = len(pending)
      show()
      (ref,), _ = ray.wait(list(pending), num_returns=1)
      actor, task = pending.pop(ref)
      try:
        finished(ray.get(ref))
      except ray.exceptions.RayError as e:  # the worker process died (OOM, node lost)
        finished({"game": task.game, "algo": task.algo, "seed": task.seed,
                  "run_dir": task.out_dir, "log": os.path.join(task.out_dir, RUN_LOG),
                  "status": "failed", "error": f"{type(e).__name__}: {e}"})
        actors.remove(actor)
        actor = cls.remote(REPO_DIR)
        actors.append(actor)
      if queue:
        submit(actor, queue.pop(0))
    running[0] = 0
    show()
    for a in actors:
      ray.kill(a)
  finally:
    if started:
      ray.shutdown()
  return out


def run_preset(tasks: Sequence[RunTask], root: str, name: str, info: dict,
               **kw) -> list[dict]:
  """A benchmark's sweep: `<root>/sweep_info.json` with `info`, then `run_sweep(**kw)` with a
  progress line named `name` (armac_spiel.progress.SweepProgress)."""
  write_sweep_info(root, {"preset": name, **info})
  bar = progress.SweepProgress(len(tasks), desc=name)
  try:
    return run_sweep(tasks, root, progress=bar, **kw)
  finally:
    bar.close()


def write_sweep_info(root: str, info: dict) -> None:
  """`<root>/sweep_info.json`: the sweep's arguments and the driver's provenance."""
  os.makedirs(root, exist_ok=True)
  rundir.write_json_atomic(os.path.join(root, "sweep_info.json"),
                           {**info, "provenance": rundir.provenance()})

