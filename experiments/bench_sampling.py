"""Sampling throughput on Leduc (episodes per second), measured in one run.

  python -m experiments.bench_sampling --out=bench_sampling.json

Keys: `plain_pyspiel_eps` (a plain pyspiel loop, uniform random actions), `lockstep_eps`
(LockstepSampler with a small MLP policy in the loop), and, where the compiled tree backend
exists, `tree_eps` (TreeSampler with the same MLP) and `eval_s_leduc` (exact evaluation of the
MLP policy on Leduc, tabularisation included). Ratios against plain pyspiel are included.
"""

import json
import time

import numpy as np
import torch
from absl import app, flags

import games
from armac_spiel.atomic import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_sampling.json", "Output JSON path.")
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_float("seconds", 5.0, "Measurement time per contender.")
flags.DEFINE_integer("lockstep_batch", 256, "Episodes per lockstep batch.")
flags.DEFINE_integer("tree_batch", 8192, "Episodes per tree-sampler batch.")
flags.DEFINE_integer("seed", 0, "Seed.")


def mlp_policy(sgame):
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Linear(sgame.info_state_size, 64), torch.nn.ReLU(),
                            torch.nn.Linear(64, sgame.num_actions))

  @torch.no_grad()
  def policy(batch):
    logits = net(batch.info_state).masked_fill(~batch.legal_mask, -1e9)
    return torch.softmax(logits, 1)

  def table_fn(x, mask):
    return torch.softmax(net(x).masked_fill(~mask, -1e9), 1)

  return policy, table_fn


def rate(fn, seconds):
  """Episodes per second of fn() (which returns an episode count), after one warm-up call."""
  fn()
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    n += fn()
  return n / (time.perf_counter() - t0)


def plain_pyspiel(game, rng, episodes=200):
  for _ in range(episodes):
    s = game.new_initial_state()
    while not s.is_terminal():
      if s.is_chance_node():
        outcomes, probs = zip(*s.chance_outcomes())
        s.apply_action(outcomes[rng.choice(len(outcomes), p=probs)])
      else:
        la = s.legal_actions()
        s.apply_action(la[rng.integers(len(la))])
  return episodes


def main(argv):
  del argv
  torch.set_num_threads(1)
  sg = games.load_game(FLAGS.game_name)
  policy, table_fn = mlp_policy(sg)
  rng = np.random.default_rng(FLAGS.seed)
  out = {"game": FLAGS.game_name, "torch_threads": 1}
  out["plain_pyspiel_eps"] = rate(lambda: plain_pyspiel(sg.game, rng), FLAGS.seconds)
  lock = games.LockstepSampler(sg, FLAGS.seed)
  out["lockstep_eps"] = rate(lambda: lock.sample(policy, FLAGS.lockstep_batch).batch_size,
                             FLAGS.seconds)
  out["lockstep_over_plain"] = out["lockstep_eps"] / out["plain_pyspiel_eps"]
  try:
    from games import tree
  except ImportError:
    tree = None
  if tree is not None and tree.tree_fits(FLAGS.game_name):
    ts = tree.TreeSampler(sg, FLAGS.seed)
    out["tree_eps"] = rate(lambda: ts.sample(policy, FLAGS.tree_batch).batch_size,
                           FLAGS.seconds)
    out["tree_over_plain"] = out["tree_eps"] / out["plain_pyspiel_eps"]
    from armac_spiel import evaluation
    evaluation.exploitability_fast(FLAGS.game_name, table_fn)  # warm caches (tree compile)
    times = []
    for _ in range(5):
      t0 = time.perf_counter()
      evaluation.exploitability_fast(FLAGS.game_name, table_fn)
      times.append(time.perf_counter() - t0)
    out["eval_s_leduc"] = float(np.median(times))
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
