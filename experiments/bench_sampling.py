"""Sampling throughput (episodes per second) on games of the ladder, measured in one run.

  python -m experiments.bench_sampling --out=bench_sampling.json
  python -m experiments.bench_sampling --games=leduc,liars_dice_1,goofspiel_5 --notree

Per game (`games` in the JSON, by rung name of games/ladder.py): `plain_pyspiel_eps` (a plain
pyspiel loop, uniform random actions: no policy call and no encoding, so less work than any
sampler does), `lockstep_eps` (LockstepSampler with a small MLP policy in the loop; every
field of its Trajectories is built), and, where the compiled tree fits and `--tree` is on,
`tree_eps` (TreeSampler with the same MLP as a `TablePolicy`: the network runs once per batch
on all information states and every step is a table look-up; encodings are gathered when
read, not here), `tree_rowwise_eps` (TreeSampler calling the MLP on every decision row, as a
learner whose policy differs per episode does) and `eval_s` (exact evaluation of the MLP
policy, tabularisation included). The contenders alternate in rounds; rates are medians over
rounds and ratios against plain pyspiel medians of the per-round ratios. Each sampler is new
for each game and warmed by one batch: the lockstep sampler's node cache fills while it is
measured, as in the first minutes of training.
"""

import json
import random
import time

import numpy as np
import torch
from absl import app, flags

import games
from armac_spiel import evaluation
from armac_spiel.atomic import atomic_write_text
from games import ladder, tree

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_sampling.json", "Output JSON path.")
flags.DEFINE_list("games", ["leduc"], "Ladder rungs (names in games/ladder.py) to measure.")
flags.DEFINE_bool("tree", True, "Also measure the compiled-tree sampler where the tree fits.")
flags.DEFINE_float("seconds", 5.0, "Measurement time per contender.")
flags.DEFINE_integer("rounds", 5, "Alternating measurement rounds.")
flags.DEFINE_integer("lockstep_batch", 2048, "Episodes per lockstep batch (the learner uses 2048).")
flags.DEFINE_integer("tree_batch", 16384, "Episodes per tree-sampler batch.")
flags.DEFINE_integer("seed", 0, "Seed.")


def masked_softmax(logits, mask):
  """Softmax over legal actions, taken along dim 0 of the (A, R) transpose: PyTorch's CPU
  softmax is several times slower over a size-A last dim."""
  return torch.softmax(logits.T.masked_fill(~mask.T, -1e9), 0).T


def mlp_policy(sgame):
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Linear(sgame.info_state_size, 64), torch.nn.ReLU(True),
                            torch.nn.Linear(64, sgame.num_actions))

  @torch.inference_mode()
  def policy(batch):
    return masked_softmax(net(batch.info_state), batch.legal_mask)

  @torch.inference_mode()
  def table_fn(x, mask):
    return masked_softmax(net(x), mask)

  return policy, table_fn


def rates(fns, seconds, rounds):
  """Episodes per second of each fn() (which returns an episode count), after one warm-up
  call each: the contenders alternate for `rounds` rounds of seconds / rounds each, so that
  load from other processes hits them alike. Returns the per-round rates of each."""
  for fn in fns.values():
    fn()
  out = {k: [] for k in fns}
  for _ in range(rounds):
    for k, fn in fns.items():
      n, t0 = 0, time.perf_counter()
      while time.perf_counter() - t0 < seconds / rounds:
        n += fn()
      out[k].append(n / (time.perf_counter() - t0))
  return out


def plain_pyspiel(game, rng, episodes=200):
  """Uniform random actions; chance outcomes by a linear search of their cumulative sums."""
  for _ in range(episodes):
    s = game.new_initial_state()
    while not s.is_terminal():
      if s.is_chance_node():
        u = rng.random()
        for a, p in s.chance_outcomes():
          u -= p
          if u < 0:
            break
        s.apply_action(a)  # rounding past the end leaves the last outcome
      else:
        s.apply_action(rng.choice(s.legal_actions()))
  return episodes


def bench_game(game_string: str) -> dict:
  """The contenders' rates on one game (and the exact evaluation time where the tree fits)."""
  sg = games.load_game(game_string)
  policy, table_fn = mlp_policy(sg)
  rng = random.Random(FLAGS.seed)
  lock = games.LockstepSampler(sg, FLAGS.seed)
  fns = {"plain_pyspiel": lambda: plain_pyspiel(sg.game, rng),
         "lockstep": lambda: lock.sample(policy, FLAGS.lockstep_batch).batch_size}
  has_tree = FLAGS.tree and tree.tree_fits(game_string)
  if has_tree:
    ts = tree.TreeSampler(sg, FLAGS.seed)
    table_policy = games.TablePolicy(table_fn)
    fns["tree"] = lambda: ts.sample(table_policy, FLAGS.tree_batch).batch_size
    fns["tree_rowwise"] = lambda: ts.sample(policy, FLAGS.tree_batch).batch_size
  per_round = rates(fns, FLAGS.seconds, FLAGS.rounds)
  plain = np.asarray(per_round["plain_pyspiel"])
  out = {"game": game_string}
  for k, r in per_round.items():
    out[f"{k}_eps"] = float(np.median(r))
    if k != "plain_pyspiel":  # median of the per-round ratios: robust to shared load
      out[f"{k}_over_plain"] = float(np.median(np.asarray(r) / plain))
  if has_tree:
    evaluation.fast_exploitability(game_string, table_fn)  # warm caches (tree compile)
    times = []
    for _ in range(5):
      t0 = time.perf_counter()
      evaluation.fast_exploitability(game_string, table_fn)
      times.append(time.perf_counter() - t0)
    out["eval_s"] = float(np.median(times))
  return out


def main(argv):
  del argv
  try:
    rungs = [ladder.rung(name) for name in FLAGS.games]
  except ValueError as e:
    raise app.UsageError(f"--games={','.join(FLAGS.games)}: {e}") from e
  torch.set_num_threads(1)
  out = {"torch_threads": 1, "seconds": FLAGS.seconds, "rounds": FLAGS.rounds,
         "lockstep_batch": FLAGS.lockstep_batch, "games": {}}
  for r in rungs:
    out["games"][r.name] = bench_game(r.game)
    print(json.dumps({r.name: out["games"][r.name]}), flush=True)
  atomic_write_text(FLAGS.out, json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
