"""Learner speed: milliseconds per ARMAC epoch and where they go, with and without running
each network once per distinct compiled-tree id (`armac.unique_forward`), in one run.

  python -m experiments.bench_learner --out=bench_learner.json [--games=kuhn_poker,leduc_poker]

Per game, two learners with the game's tuned config and the same seed: `rowwise`
(unique_inputs=False: every minibatch row through the networks, as before issue 7) and
`unique`. They alternate for `--rounds` rounds of `--epochs` epochs each, after `--warmup`
epochs, so load from other processes hits both alike. Reported: median ms per epoch, the
per-phase split (sampling, critic fit, regret targets, W fit, actor fit) summed over the
timed epochs, and the ratio rowwise / unique.
"""

import json
import time
from collections import defaultdict

import numpy as np
import torch
from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel import run_io, trainer
from armac_spiel.armac import ARMAC
from armac_spiel.atomic import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_learner.json", "Output JSON path.")
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "Games (tuned YAML configs).")
flags.DEFINE_integer("warmup", 5, "Untimed epochs first.")
flags.DEFINE_integer("rounds", 4, "Alternating rounds.")
flags.DEFINE_integer("epochs", 5, "Epochs per learner per round.")
flags.DEFINE_integer("seed", 0, "Seed.")

PHASES = {"_sample": "sampling", "_train_critic": "critic", "_targets": "targets",
          "_train_regret": "regret_W", "_train_actor": "actor"}


def timed(learner, totals):
  """Wraps the learner's phase methods to add their wall seconds into `totals`."""
  for name, label in PHASES.items():
    fn = getattr(learner, name)

    def wrap(*a, _fn=fn, _label=label, **kw):
      t0 = time.perf_counter()
      try:
        return _fn(*a, **kw)
      finally:
        totals[_label] += time.perf_counter() - t0
    setattr(learner, name, wrap)


def main(argv):
  del argv
  torch.set_num_threads(1)
  out = {"seed": FLAGS.seed, "torch_threads": 1, "provenance": run_io.provenance()}
  for game in FLAGS.games:
    cfg = config_lib.from_dict(config_lib.load_yaml(trainer.default_config_path(game)))
    # Row-wise fits in both variants: the comparison is of the per-row network passes
    # (regret_fit / actor_fit = states need ids and have no row-wise variant).
    cfg = cfg.replace(regret_fit="rows", actor_fit="rows")
    learners, per_epoch, phases = {}, defaultdict(list), {}
    for variant, unique in (("rowwise", False), ("unique", True)):
      learners[variant] = ARMAC(game, cfg, FLAGS.seed, unique_inputs=unique)
      for _ in range(FLAGS.warmup):
        learners[variant].run_epoch()
      phases[variant] = defaultdict(float)
      timed(learners[variant], phases[variant])
    for _ in range(FLAGS.rounds):
      for variant, learner in learners.items():
        for _ in range(FLAGS.epochs):
          t0 = time.perf_counter()
          learner.run_epoch()
          per_epoch[variant].append(1000 * (time.perf_counter() - t0))
    n = FLAGS.rounds * FLAGS.epochs
    res = {}
    for variant in learners:
      res[variant] = {"ms_per_epoch": float(np.median(per_epoch[variant])),
                      "phase_ms_per_epoch": {k: 1000 * v / n
                                             for k, v in phases[variant].items()}}
    res["speedup"] = res["rowwise"]["ms_per_epoch"] / res["unique"]["ms_per_epoch"]
    res["config"] = {k: getattr(cfg, k) for k in ("episodes_per_epoch", "critic_steps",
                                                  "regret_steps", "actor_steps")}
    out[game] = res
    print(game, json.dumps({v: round(res[v]["ms_per_epoch"], 1) for v in learners}),
          f"speedup {res['speedup']:.2f}", flush=True)
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
