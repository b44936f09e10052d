"""Exact evaluation at scale: the compiled tree against OpenSpiel's C++ exploitability.

  python -m experiments.bench_eval --out=bench_eval.json [--games="G1;G2;..."] \
      [--openspiel_max_nodes=N] [--figure=F.png] [--device=cpu|cuda] [--batch=8]

Default games: the ladder (games.ladder LADDER and LARGE). Each game is measured in a fresh
interpreter, so that its peak resident memory is its own, in these steps:
- compile: one walk of the OpenSpiel tree into arrays (games.tree.compile.traverse), the
  disk cache bypassed; then the arrays are written to a temporary .npz;
- load: the .npz read back (no pickle) into a GameTree; prepare: the evaluator's node
  groups (games.tree.exact.Exact, every player's best-response order);
- eval: NashConv of a random policy (Dirichlet(1) rows, --seed), the median of --repeats
  calls after one untimed call; eval_batch: one call on --batch random policies at once;
  cfv: best_response_cfv (the scheduler's exact update) of the same policy;
- openspiel: OpenSpiel's C++ `pyspiel.exploitability` (`pyspiel.nash_conv` when the game
  is not two-player zero-sum) on the same policy, in the same process, skipped above
  --openspiel_max_nodes nodes; `agree`: the two values within 1e-9.

Written: per game string {nodes, infostates, compile_s, load_s, prepare_s, peak_rss_mb,
eval_s, eval_batch_s, cfv_s, openspiel_s, agree, value, openspiel_value, bytes_per_node,
compile_s_per_node, ..., command, provenance}. Seconds are wall time; `*_cpu_s` are the
process's CPU seconds of the same step (steadier on a shared machine). Peaks come from
VmHWM, reset between the steps through /proc/self/clear_refs (Linux only). With --figure,
a log-log plot of evaluation CPU seconds against nodes for both (--plot_only=F.json draws
it from an earlier output).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyspiel
import torch
from absl import app, flags

from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import rundir
from games import ladder, load_game
from games.tree import GameTree, TreeArrays, traverse

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_eval.json", "Output JSON path.")
flags.DEFINE_string("games", ";".join(r.game for r in ladder.LADDER + ladder.LARGE),
                    "Game strings separated by ';' (default: the ladder, LARGE included).")
flags.DEFINE_integer("openspiel_max_nodes", 3_000_000,
                     "Skip OpenSpiel's exploitability on games with more nodes (reported as "
                     "skipped); 0 skips it everywhere.")
flags.DEFINE_integer("max_nodes", 20_000_000, "Largest tree to compile.")
flags.DEFINE_integer("seed", 0, "Seed of the random policies.")
flags.DEFINE_integer("repeats", 3, "Timed evaluations per game (the median is reported).")
flags.DEFINE_integer("batch", 8, "Policies of the batched evaluation (0 skips it).")
flags.DEFINE_string("device", "cpu", "Device of the exact evaluator (cpu or cuda).")
flags.DEFINE_string("figure", "", "If set, a PNG of evaluation CPU seconds against nodes.")
flags.DEFINE_string("plot_only", "", "Draw --figure from this earlier --out, measuring nothing.")
flags.DEFINE_string("one", "", "Internal: measure this one game and print a JSON line.")

AGREE_TOL = 1e-9


def _status() -> dict:
  out = {}
  with open("/proc/self/status") as f:
    for line in f:
      key, _, value = line.partition(":")
      if key in ("VmRSS", "VmHWM"):
        out[key] = int(value.split()[0])
  return out


def _reset_peak() -> None:
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS


def _peak_mb() -> float:
  return _status()["VmHWM"] / 1024


def _random_policies(tree: GameTree, k: int, seed: int) -> torch.Tensor:
  """(k, S, A) Dirichlet(1) rows over the legal actions."""
  rng = np.random.default_rng(seed)
  legal = tree.info_legal.numpy()
  p = rng.gamma(1.0, size=(k,) + legal.shape) * legal
  return torch.from_numpy(p / p.sum(-1, keepdims=True))


def measure(game_string: str) -> dict:
  """Every step of the module docstring on one game, in this process."""
  torch.set_num_threads(1)
  sg = load_game(game_string)
  zero_sum = sg.is_two_player_zero_sum
  out = {"game": game_string, "imports_rss_mb": _status()["VmRSS"] / 1024}
  _reset_peak()
  t0, c0 = time.perf_counter(), time.process_time()
  arrays = traverse(sg, FLAGS.max_nodes)
  out["compile_s"] = time.perf_counter() - t0
  out["compile_cpu_s"] = time.process_time() - c0
  out["peak_rss_compile_mb"] = _peak_mb()
  m = arrays.num_nodes
  out.update(nodes=m, infostates=arrays.num_infostates,
             decision_nodes=int((arrays.infostate >= 0).sum()),
             views=int(arrays.view_tensors.shape[0]), stored_bytes=arrays.nbytes(),
             bytes_per_node=arrays.nbytes() / m, compile_s_per_node=out["compile_s"] / m)
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "tree.npz")
    t0 = time.perf_counter()
    arrays.save(path)
    out["save_s"] = time.perf_counter() - t0
    out["file_bytes"] = os.path.getsize(path)
    del arrays
    _reset_peak()
    t0 = time.perf_counter()
    tree = GameTree(TreeArrays.load(path))
    out["load_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  ex = tree.exact_on(FLAGS.device)
  ex.prepare()
  out["prepare_s"] = time.perf_counter() - t0
  out["evaluator_bytes"] = ex.nbytes()
  out["evaluator_bytes_per_node"] = ex.nbytes() / m
  probs = _random_policies(tree, max(FLAGS.batch, 1), FLAGS.seed)
  p = probs[0]
  ex.nash_conv(p)  # untimed: allocator warm-up
  times, cpu = [], []
  for _ in range(FLAGS.repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    nc = ex.nash_conv(p)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  out["eval_s"] = statistics.median(times)
  out["eval_cpu_s"] = statistics.median(cpu)
  out["value"] = nc / 2 if zero_sum else nc
  out["value_kind"] = "exploitability" if zero_sum else "nash_conv"
  if FLAGS.batch:
    t0 = time.perf_counter()
    ncs = ex.nash_conv(probs)
    out["eval_batch_s"] = time.perf_counter() - t0
    out["batch"] = FLAGS.batch
    out["batch_first_equals_single"] = float(ncs[0]) == nc
  if zero_sum:
    t0 = time.perf_counter()
    ex.best_response_cfv(p)
    out["cfv_s"] = time.perf_counter() - t0
  out["peak_rss_load_eval_mb"] = _peak_mb()
  if m <= FLAGS.openspiel_max_nodes:
    pol = tree.to_pyspiel_policy(p)
    _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    ref = (pyspiel.exploitability(sg.game, pol) if zero_sum else
           pyspiel.nash_conv(sg.game, pol))
    out["openspiel_s"] = time.perf_counter() - t0
    out["openspiel_cpu_s"] = time.process_time() - c0
    out["peak_rss_openspiel_mb"] = _peak_mb()
    out["openspiel_value"] = float(ref)
    out["agree"] = abs(out["value"] - float(ref)) <= AGREE_TOL
    out["speedup"] = out["openspiel_s"] / out["eval_s"]
    out["speedup_cpu"] = out["openspiel_cpu_s"] / out["eval_cpu_s"]
  else:
    out.update(openspiel_s=None, openspiel_value=None, agree=None,
               openspiel="skipped: more than --openspiel_max_nodes nodes")
  out["peak_rss_mb"] = max(out["peak_rss_compile_mb"], out["peak_rss_load_eval_mb"],
                           out.get("peak_rss_openspiel_mb", 0.0))
  return out


def _figure(results: dict, path: str) -> None:
  """Log-log CPU seconds of one evaluation against nodes, for both evaluators."""
  import matplotlib  # optional dependency: only for --figure
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = sorted(results.values(), key=lambda r: r["nodes"])
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  ax.loglog([r["nodes"] for r in rows], [r["eval_cpu_s"] for r in rows], "o-",
            label="compiled tree (games.tree, float64)")
  os_rows = [r for r in rows if r.get("openspiel_cpu_s") is not None]
  ax.loglog([r["nodes"] for r in os_rows], [r["openspiel_cpu_s"] for r in os_rows], "s--",
            label="OpenSpiel C++ pyspiel.exploitability")
  ax.set_xlabel("nodes of the game tree")
  ax.set_ylabel("CPU seconds per evaluation (one thread)")
  ax.set_title("Exact exploitability of one random policy")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv):
  del argv
  if FLAGS.one:
    print(json.dumps(measure(FLAGS.one)), flush=True)
    return
  if FLAGS.plot_only:
    if not FLAGS.figure:
      raise app.UsageError("--plot_only needs --figure (the PNG to write)")
    with open(FLAGS.plot_only) as f:
      _figure(json.load(f), FLAGS.figure)
    return
  games = [g.strip() for g in FLAGS.games.split(";") if g.strip()]
  if not games:
    raise app.UsageError(f"--games={FLAGS.games!r}: no game string (separate them by ';')")
  results = {}
  passed = [f"--{k}={getattr(FLAGS, k)}" for k in (
      "openspiel_max_nodes", "max_nodes", "seed", "repeats", "batch", "device")]
  for g in games:
    proc = subprocess.run([sys.executable, "-m", "experiments.bench_eval", f"--one={g}"] +
                          passed, capture_output=True, text=True)
    if proc.returncode != 0:
      raise RuntimeError(f"{g}: exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    results[g] = json.loads(proc.stdout.strip().splitlines()[-1])
    r = results[g]
    print(json.dumps({k: r.get(k) for k in ("game", "nodes", "compile_s", "load_s",
                                              "eval_s", "openspiel_s", "agree",
                                              "peak_rss_mb")}), flush=True)
  args = [a.split("=")[0] + "=OUT" if a.startswith(("--out=", "--figure=")) else a
          for a in sys.argv[1:]]  # the command, not where its output went
  prov = {"command": " ".join(["python -m experiments.bench_eval"] + args),
          "provenance": rundir.provenance()}
  atomic_write_text(FLAGS.out, json.dumps({g: {**r, **prov} for g, r in results.items()},
                                          indent=1))
  if FLAGS.figure:
    _figure(results, FLAGS.figure)


if __name__ == "__main__":
  app.run(main)
