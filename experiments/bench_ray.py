"""Benchmark: N equal CPU-bound sweep runs, sequential inline vs on a local Ray.

  python -m experiments.bench_ray --out=bench_ray.json [--game=kuhn_poker] \
      [--algo=armac] [--max_epochs=100] [--max_steps=...] [--n_tasks=4] [--num_cpus=2]

Runs the same N tasks (seeds 0..N-1, a fixed step/epoch budget, one evaluation at the end)
first one after another through `LocalWorker`, then through `run_sweep` on
`ray.init(num_cpus=...)`. Writes sequential_s, ray_s (Ray start-up included),
ray_s_excl_init, ratio = ray_s / sequential_s, whether the non-timing results of both
modes agree, per-task wall and CPU seconds, and the machine-wide busy cores and load average
of each phase (other processes may share the cores).

The default task is an ARMAC run (single-threaded torch, compute-bound), the unit a sweep is
made of. With `--algo=es_mccfr --game=leduc_poker --max_steps=4000` each task ran ~17% longer
(wall and CPU time alike) when two shared the machine, so that setting measures the machine's
contention as much as Ray's overhead.
"""

import json
import os
import sys
import tempfile
import time

from absl import app, flags

from armac_spiel.runs import rundir, sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output JSON.")
flags.DEFINE_string("game", "kuhn_poker", "Game of every task.")
flags.DEFINE_enum("algo", "armac", sweep.known_algorithms(), "Algorithm of every task.")
flags.DEFINE_integer("max_steps", 4000, "Baseline step budget per task.")
flags.DEFINE_integer("max_epochs", 100, "ARMAC epoch budget per task.")
flags.DEFINE_string("armac_config", None, "ARMAC YAML (ARMAC algos only).")
flags.DEFINE_integer("n_tasks", 4, "Number of equal tasks.")
flags.DEFINE_integer("num_cpus", 2, "CPUs of the local Ray.")

_TIMING = set(rundir.TIMING_FIELDS)


def _results(root: str) -> dict:
  """Non-timing metrics of every run under `root`, keyed by run path."""
  out = {}
  for dirpath, _, files in os.walk(root):
    if "metrics.jsonl" in files:
      rows = rundir.read_metrics(os.path.join(dirpath, "metrics.jsonl"))
      out[os.path.relpath(dirpath, root)] = [
          {k: v for k, v in r.items() if k not in _TIMING} for r in rows]
  return out


def _cpu_ticks() -> tuple[int, int]:
  """(idle, total) jiffies of all CPUs since boot (Linux), or (0, 0)."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      vals = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return 0, 0
  return vals[3] + vals[4], sum(vals)


def _busy_cores(before, after) -> float | None:
  """Cores kept busy by all processes between two `_cpu_ticks` readings."""
  total = after[1] - before[1]
  if total <= 0:
    return None
  return (1.0 - (after[0] - before[0]) / total) * os.cpu_count()


def main(argv):
  del argv
  if not FLAGS.out:
    print("error: --out is required", file=sys.stderr)
    return 2
  import torch
  torch.set_num_threads(1)
  tmp = tempfile.mkdtemp(prefix="bench_ray_")
  kw = dict(plot=False)
  if sweep.learner_of(FLAGS.algo) == "armac":
    kw.update(max_epochs=FLAGS.max_epochs, armac_config=FLAGS.armac_config)
  else:
    kw.update(max_steps=FLAGS.max_steps, eval_every_steps=FLAGS.max_steps)
  seeds = range(FLAGS.n_tasks)
  seq_root, ray_root = os.path.join(tmp, "sequential"), os.path.join(tmp, "ray")
  load_before = os.getloadavg()

  ticks0 = _cpu_ticks()
  t0 = time.perf_counter()
  worker = sweep.LocalWorker()
  seq = [worker.run(t) for t in sweep.make_tasks(seq_root, [FLAGS.game], [FLAGS.algo],
                                                 seeds, **kw)]
  sequential_s = time.perf_counter() - t0
  ticks1 = _cpu_ticks()

  t0 = time.perf_counter()
  sweep.init_ray("local", FLAGS.num_cpus)
  t1 = time.perf_counter()
  try:
    par = sweep.run_sweep(sweep.make_tasks(ray_root, [FLAGS.game], [FLAGS.algo], seeds, **kw),
                          ray_root, ray_address="local")
    t2 = time.perf_counter()
  finally:
    import ray
    ray.shutdown()
  ray_s, ray_excl = t2 - t0, t2 - t1
  ticks2 = _cpu_ticks()

  failed = [s for s in seq + par if s["status"] != "done"]
  result = {
      "game": FLAGS.game, "algo": FLAGS.algo, "n_tasks": FLAGS.n_tasks,
      "budget": {k: v for k, v in kw.items() if k != "plot"}, "num_cpus": FLAGS.num_cpus,
      "sequential_s": sequential_s, "ray_s": ray_s, "ray_s_excl_init": ray_excl,
      "ray_init_s": t1 - t0, "ratio": ray_s / sequential_s,
      "ratio_excl_init": ray_excl / sequential_s,
      "task_wall_s_sequential": [s.get("wall_s") for s in seq],
      "task_wall_s_ray": [s.get("wall_s") for s in par],
      "task_cpu_s_sequential": [s.get("cpu_s") for s in seq],
      "task_cpu_s_ray": [s.get("cpu_s") for s in par],
      # Cores busy machine-wide in each phase (this benchmark plus everything else): on a
      # shared machine the Ray phase only gains if a second core was actually free.
      "busy_cores_sequential": _busy_cores(ticks0, ticks1),
      "busy_cores_ray": _busy_cores(ticks1, ticks2),
      "same_results": _results(seq_root) == _results(ray_root),
      "failed": [s.get("error") for s in failed],
      "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
      "cpu_count": os.cpu_count(), "provenance": rundir.provenance()}
  rundir.write_json_atomic(FLAGS.out, result)
  print(json.dumps({k: result[k] for k in ("sequential_s", "ray_s", "ray_s_excl_init",
                                           "ratio", "same_results", "busy_cores_sequential",
                                           "busy_cores_ray")}, indent=1))
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
