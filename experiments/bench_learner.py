"""Learner speed: milliseconds per ARMAC epoch and where they go, for a baseline and a
faster variant of the learner, in one run.

  python -m experiments.bench_learner --out=bench_learner.json [--compare=unique|adam]

`--compare=unique` (default): `rowwise` (unique_inputs=False: every minibatch row through
the networks) against `unique` (each network once per distinct compiled-tree id,
`networks.unique_forward`; with `--sampler=pyspiel`, once per distinct input found by
content, `networks.content_ids`), both with row-wise W and actor fits.
`--compare=adam`: `default` (torch.optim.Adam's default for-loop implementation) against
`fused` (what ARMAC uses), with the tuned configs as they are.

Per game, both learners have the game's tuned config and the same seed. They alternate for
`--rounds` rounds of `--epochs` epochs each, after `--warmup` epochs, so load from other
processes hits both alike. Reported: median ms per epoch, the per-phase split (sampling,
critic fit, regret targets, W fit, actor fit) summed over the timed epochs, and the ratio
baseline / variant (`speedup`).
"""

import json
import time
from collections import defaultdict

import numpy as np
import torch
from absl import app, flags

from armac_spiel.armac import ARMAC
from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import rundir, spec as spec_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_learner.json", "Output JSON path.")
flags.DEFINE_list("games", ["kuhn_poker", "leduc_poker"], "Games (tuned YAML configs).")
flags.DEFINE_integer("warmup", 5, "Untimed epochs first.")
flags.DEFINE_integer("rounds", 4, "Alternating rounds.")
flags.DEFINE_integer("epochs", 5, "Epochs per learner per round.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_enum("compare", "unique", ["unique", "adam"], "Which pair of learners to time.")
flags.DEFINE_enum("sampler", "auto", ["auto", "tree", "pyspiel"],
                  "Sampler of both learners (pyspiel: `unique` finds distinct inputs by "
                  "content, networks.content_ids, as there are no tree ids).")

PHASES = {"sample_episodes": "sampling", "critic_fit.train": "critic", "add_targets": "targets",
          "regret_fit.train": "regret_W", "actor_fit.train": "actor"}


def timed(learner, totals):
  """Wraps the learner's phase methods (PHASES: attribute paths) to add their wall seconds
  into `totals`."""
  for path, label in PHASES.items():
    *parents, name = path.split(".")
    owner = learner
    for part in parents:
      owner = getattr(owner, part)
    fn = getattr(owner, name)

    def wrap(*a, _fn=fn, _label=label, **kw):
      t0 = time.perf_counter()
      try:
        return _fn(*a, **kw)
      finally:
        totals[_label] += time.perf_counter() - t0
    setattr(owner, name, wrap)


def _unfused(learner: ARMAC) -> ARMAC:
  """The learner with torch.optim.Adam's default implementation in place of fused Adam."""
  for fit in (learner.critic_fit, learner.regret_fit, learner.actor_fit):
    group = fit.trainer.opt.param_groups[0]
    fit.trainer.opt = torch.optim.Adam(group["params"], lr=group["lr"])
  return learner


def variants(game: str, cfg):
  """(baseline, variant) learner factories for --compare, and the config they use."""
  if FLAGS.compare == "adam":
    cfg = cfg.replace(sampler=FLAGS.sampler)  # a ConfigError names the field if it cannot
    return {"default": lambda: _unfused(ARMAC(game, cfg, FLAGS.seed)),
            "fused": lambda: ARMAC(game, cfg, FLAGS.seed)}, cfg
  # Row-wise fits in both variants: the comparison is of the per-row network passes
  # (regret_fit / actor_fit = states need ids and have no row-wise variant).
  cfg = cfg.replace(regret_fit="rows", actor_fit="rows", regret_discount="none", regret_lstsq=0,
                    sampler=FLAGS.sampler)
  return {"rowwise": lambda: ARMAC(game, cfg, FLAGS.seed, unique_inputs=False),
          "unique": lambda: ARMAC(game, cfg, FLAGS.seed, unique_inputs=True)}, cfg


def main(argv):
  del argv
  torch.set_num_threads(1)
  out = {"seed": FLAGS.seed, "torch_threads": 1, "compare": FLAGS.compare,
         "sampler": FLAGS.sampler,
         "provenance": rundir.provenance()}
  for game in FLAGS.games:
    cfg = spec_lib.resolve_spec("armac", game, FLAGS.seed, "/dev/null",
                                 max_steps=FLAGS.epochs).config
    makers, cfg = variants(game, cfg)
    learners, per_epoch, phases = {}, defaultdict(list), {}
    for variant, make in makers.items():
      learners[variant] = make()
      for _ in range(FLAGS.warmup):
        learners[variant].step()
      phases[variant] = defaultdict(float)
      timed(learners[variant], phases[variant])
    for _ in range(FLAGS.rounds):
      for variant, learner in learners.items():
        for _ in range(FLAGS.epochs):
          t0 = time.perf_counter()
          learner.step()
          per_epoch[variant].append(1000 * (time.perf_counter() - t0))
    n = FLAGS.rounds * FLAGS.epochs
    res = {}
    for variant in learners:
      res[variant] = {"ms_per_epoch": float(np.median(per_epoch[variant])),
                      "phase_ms_per_epoch": {k: 1000 * v / n
                                             for k, v in phases[variant].items()}}
    base, new = makers
    res["speedup"] = res[base]["ms_per_epoch"] / res[new]["ms_per_epoch"]
    res["config"] = {k: getattr(cfg, k) for k in ("episodes_per_epoch", "critic_steps",
                                                  "regret_steps", "actor_steps")}
    out[game] = res
    print(game, json.dumps({v: round(res[v]["ms_per_epoch"], 1) for v in learners}),
          f"speedup {res['speedup']:.2f}", flush=True)
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
