"""ARMAC, ARMAC with the scheduler and OS-MCCFR on a game beyond exact evaluation.

  python -m experiments.beyond_exact --game=leduc3_6x4 --seeds=0,1,2 --time_budget_s=120 \
      --out_dir=OUT

--game is a rung of games.ladder.BEYOND (or an OpenSpiel game string); the script checks
that the compiled tree refuses it. Each run (armac_spiel.runs, one after the other) is
evaluated every --eval_every_s training seconds by sampled play (--evaluation: learned_br,
or lbr on poker; approximate evaluation keeps within 20% of the run's time), so each run's
metrics.jsonl is a curve of lower bounds with their 95% intervals. The scheduler's variant
uses the model-free br_critic update, its states keyed by clusters of information-state
tensors (state_keying.level 2), since neither needs the tree, and samples the learning
player's actions from its mix (policy_mixer.behaviour). What is evaluated is each run's
average policy: the scheduler's deployed mix exists only as a table over every information
state (armac_spiel.scheduler.Scheduler.mixed_table), which a game this large does not have.

When the runs are done, each run's final policy gets one larger approximate evaluation
(learned_br with --final_episodes / --final_eval_episodes, and lbr on poker with
--final_lbr_eval_episodes), and every
pair of algorithms plays a duplicate match of --hands hands per seed
(`python -m experiments.match`). Writes OUT/beyond_exact.json (curves, final estimates,
head-to-head table) and OUT/beyond_exact.png.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from absl import app, flags

from armac_spiel import approx, runs
from armac_spiel.approx import in_run
from armac_spiel.approx import lbr as lbr_lib
from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import rundir
from games import ladder, load_game, tree

FLAGS = flags.FLAGS
flags.DEFINE_string("game", "leduc3_6x4", "A rung of games.ladder.BEYOND, or a game string.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("algos", ["armac", "armac_sched", "os_mccfr"],
                  "armac | armac_sched (discrete scheduler, br_critic) | os_mccfr.")
flags.DEFINE_float("time_budget_s", 120.0, "Training seconds of each run.")
flags.DEFINE_float("eval_every_s", None, "Training seconds between evaluations (default: "
                   "a fifth of the budget).")
flags.DEFINE_enum("evaluation", "learned_br", ["learned_br", "lbr"],
                  "Approximate evaluation inside the runs.")
flags.DEFINE_integer("final_episodes", 1_000_000, "learned_br training episodes of the "
                     "final evaluation of each run.")
flags.DEFINE_integer("final_eval_episodes", 200_000, "Evaluation episodes per seat of the "
                     "final evaluation.")
flags.DEFINE_integer("final_lbr_eval_episodes", 5_000, "Evaluation episodes per seat of "
                     "the final LBR evaluation (each new LBR information state costs a "
                     "range and check-down computation).")
flags.DEFINE_integer("hands", 100_000, "Hands per seat of each head-to-head match.")
flags.DEFINE_string("out_dir", None, "Output directory.")

ALGOS = {"armac": "armac", "armac_sched": "armac_sched_discrete", "os_mccfr": "os_mccfr"}


def _game() -> str:
  try:
    return ladder.rung(FLAGS.game).game
  except ValueError:
    return FLAGS.game


def _sched_yaml(out_dir: str) -> str:
  """The scheduler's sections for a game without the tree: br_critic, level-2 keys, and
  the mix as the learning player's behaviour (so that the scheduler shapes the average
  policy, which is what is evaluated: the deployed mix is a table, see the module doc)."""
  path = os.path.join(out_dir, "armac_sched.yaml")
  atomic_write_text(path, "\n".join([
      "use_scheduler: true",
      "policy_mixer:",
      "  discrete: true",
      "  behaviour: true",
      "state_keying:",
      "  level: 2",
      f"  cluster_file: {os.path.join(out_dir, 'state_clusters.pt')}",
      "utility_computation:",
      "  strategy: br_critic", ""]))
  return path


def _run_dir(algo: str, seed: int) -> str:
  return os.path.join(FLAGS.out_dir, algo, f"seed_{seed}")


def train(game: str, algo: str, seed: int) -> list[dict]:
  out = _run_dir(algo, seed)
  if os.path.exists(os.path.join(out, rundir.DONE)):
    return rundir.read_metrics(os.path.join(out, rundir.METRICS))
  spec = runs.resolve_spec(
      ALGOS[algo], game, seed, out, time_budget_s=FLAGS.time_budget_s,
      eval_every_s=FLAGS.eval_every_s or FLAGS.time_budget_s / 5, plot=False,
      config_path=_sched_yaml(FLAGS.out_dir) if algo == "armac_sched" else None,
      evaluation=FLAGS.evaluation, resume=os.path.exists(os.path.join(out, "checkpoint.pt")))
  return runs.run(spec)


def final_estimates(game: str, algo: str, seed: int) -> dict:
  learner = runs.load_run(_run_dir(algo, seed))
  pol = in_run.learner_policy(learner)
  out = {}
  budget = approx.Budget(episodes=FLAGS.final_episodes, eval_episodes=FLAGS.final_eval_episodes)
  methods = ["learned_br"]
  try:
    lbr_lib.check_applies(game)
    methods.append("lbr")
  except lbr_lib.NotPokerError:
    pass
  for m in methods:
    b = budget if m == "learned_br" else approx.Budget(
        episodes=1, eval_episodes=FLAGS.final_lbr_eval_episodes)
    out[m] = approx.estimate(game, pol, m, b, seed).to_dict()
  return out


def head_to_head(game: str, a: str, b: str, seed: int) -> dict:
  cmd = [sys.executable, "-m", "experiments.match", f"--game_name={game}",
         f"--a={_run_dir(a, seed)}", f"--b={_run_dir(b, seed)}", f"--hands={FLAGS.hands}",
         f"--seed={seed}"]
  res = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if res.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr[-2000:]}")
  return json.loads(res.stdout.strip().splitlines()[-1])["sampled"]


def plot(game: str, curves: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for k, (algo, by_seed) in enumerate(curves.items()):
    color = f"C{k}"
    for seed, pts in by_seed.items():
      x = [p["train_s"] for p in pts]
      y = [p["exploitability"] for p in pts]
      ci = [p["ci95"] for p in pts]
      ax.errorbar(x, y, yerr=ci, fmt="o-", ms=3, capsize=2, color=color, alpha=0.7,
                  label=algo if seed == min(by_seed) else None)
  ax.set_yscale("log")
  ax.set_xlabel("training seconds (evaluation excluded)")
  ax.set_ylabel(f"exploitability, {FLAGS.evaluation} lower bound (95% CI)")
  ax.set_title(game[:90], fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=120)
  plt.close(fig)
  os.replace(path + ".tmp.png", path)


def main(argv):
  del argv
  torch.set_num_threads(1)  # small batches: threads only contend
  t0 = time.perf_counter()
  game = _game()
  try:
    if not FLAGS.out_dir:
      raise ValueError("--out_dir is required")
    load_game(game).require_two_player_zero_sum("exploitability")
    for a in FLAGS.algos:
      if a not in ALGOS:
        raise ValueError(f"--algos: {a!r} is not one of {sorted(ALGOS)}")
    if FLAGS.evaluation == "lbr":
      lbr_lib.check_applies(game)
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if tree.tree_fits(game):
    print(f"error: --game={FLAGS.game}: the compiled tree holds it; exact evaluation applies",
          file=sys.stderr)
    return 2
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  curves, finals = {}, {}
  for algo in FLAGS.algos:
    for seed in seeds:
      rows = train(game, algo, seed)
      curves.setdefault(algo, {})[seed] = [
          {"train_s": r["train_s"], "episodes": r.get("episodes"),
           "exploitability": r["exploitability"], "ci95": r.get("exploitability_ci95"),
           "method": r.get("exploitability_method"), "approx_s": r.get("approx_s"),
           "eval_s": r["eval_s"]} for r in rows]
      finals.setdefault(algo, {})[seed] = final_estimates(game, algo, seed)
      print(f"{algo:12s} seed {seed}: final " + ", ".join(
          f"{m} {e['exploitability']:.4f} +- {e['ci95']:.4f}"
          for m, e in finals[algo][seed].items()), flush=True)
  matches = []
  for i, a in enumerate(FLAGS.algos):
    for b in FLAGS.algos[i + 1:]:
      per_seed = {s: head_to_head(game, a, b, s) for s in seeds}
      means = np.array([m["mean"] for m in per_seed.values()])
      matches.append({"a": a, "b": b, "per_seed": per_seed, "mean": float(means.mean())})
      print(f"{a} vs {b}: " + ", ".join(
          f"seed {s} {m['mean']:+.4f} +- {m['half_width']:.4f}" for s, m in per_seed.items()),
            flush=True)
  share = {algo: float(np.mean([sum(p["approx_s"] or 0 for p in pts) /
                                max(pts[-1]["train_s"] + pts[-1]["eval_s"], 1e-9)
                                for pts in by_seed.values()]))
           for algo, by_seed in curves.items()}
  out = {"game": game, "seeds": seeds, "time_budget_s": FLAGS.time_budget_s,
         "evaluation": FLAGS.evaluation, "tree_fits": False, "curves": curves,
         "final": finals, "head_to_head": matches, "approx_share_of_wall": share,
         "seconds": time.perf_counter() - t0}
  atomic_write_text(os.path.join(FLAGS.out_dir, "beyond_exact.json"), json.dumps(out, indent=1))
  plot(game, curves, os.path.join(FLAGS.out_dir, "beyond_exact.png"))
  print(json.dumps({"approx_share_of_wall": share, "seconds": out["seconds"]}))
  return 0


if __name__ == "__main__":
  app.run(main)
