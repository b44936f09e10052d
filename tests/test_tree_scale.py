"""The compact compiled tree: storage, disk cache, exact evaluation against OpenSpiel's C++,
batched evaluation, and the summation order the exact values rely on."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pyspiel
import pytest
import torch

from armac_spiel import evaluation
from games import infostates, ladder, load_game
from games.tree import (CHANCE, DECISION, TERMINAL, Exact, TreeArrays, compile_tree,
                        traverse, tree_fits)
from games.tree import cache
from games.tree.exact import SEQUENTIAL_COLUMNS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_LADDER = ["kuhn_poker", "leduc_poker", ladder.rung("goofspiel_4").game,
                ladder.rung("blotto_6x3").game]


def _random_policies(tree, k, seed, alpha=1.0):
  rng = np.random.default_rng(seed)
  legal = tree.info_legal.numpy()
  p = rng.gamma(alpha, size=(k,) + legal.shape) * legal
  return torch.from_numpy(p / p.sum(-1, keepdims=True))


def _cfr(game_string, iters=30):
  solver = pyspiel.CFRSolver(pyspiel.load_game(game_string))
  for _ in range(iters):
    solver.evaluate_and_update_policy()
  tree = compile_tree(game_string)
  avg = solver.average_policy()
  probs = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
  for s, key in enumerate(tree.info_keys):
    for a, p in avg.action_probabilities(key).items():
      probs[s, a] = p
  return probs


@pytest.mark.parametrize("game_string", SMALL_LADDER)
def test_information_states_are_the_tables(game_string):
  """The compiled tree numbers information states as the walk of the game does
  (games.infostates.infostate_table; games.infostate_table serves the tree's table)."""
  tree, table = compile_tree(game_string), infostates.infostate_table(game_string)
  assert tree.info_keys == table.keys
  assert torch.equal(tree.info_tensors, table.tensors)
  assert torch.equal(tree.info_legal, table.legal_mask)
  assert torch.equal(tree.info_player, table.player)
  assert tree.table.num_histories == table.num_histories


@pytest.mark.parametrize("game_string", ["kuhn_poker", "leduc_poker"])
def test_compact_arrays_give_the_dense_tree(game_string):
  """Breadth-first ids, consecutive children in action order, and the dense forms built from
  the compact arrays agree with each other and with pyspiel."""
  tree = compile_tree(game_string)
  a = tree.arrays
  assert a.infostate.dtype.itemsize <= 2 and a.num_children.dtype == np.int8  # narrowed
  m = tree.num_nodes
  assert int(a.num_children.sum()) == m - 1
  parent = tree.parent
  assert (parent[1:].diff() >= 0).all()  # children of a node are consecutive ids
  assert (tree.depth.diff() >= 0).all()
  kids = tree.children
  for n in range(m):
    k = int(a.num_children[n])
    listed = kids[n][kids[n] >= 0]
    assert listed.tolist() == list(range(int(a.first_child[n]), int(a.first_child[n]) + k))
    if tree.kind[n] == DECISION:  # children by action: the legal actions, ascending
      assert torch.nonzero(kids[n] >= 0).squeeze(1).tolist() == torch.nonzero(
          tree.legal_mask[n]).squeeze(1).tolist()
  # Every chance edge's probability and outcome against pyspiel.
  stack = [(pyspiel.load_game(game_string).new_initial_state(), 0)]
  while stack:
    state, n = stack.pop()
    if state.is_terminal():
      assert tree.kind[n] == TERMINAL and tree.returns[n].tolist() == state.returns()
      continue
    if state.is_chance_node():
      assert tree.kind[n] == CHANCE
      for k, (o, p) in enumerate(state.chance_outcomes()):
        assert (tree.chance_outcome[n, k], tree.chance_prob[n, k]) == (o, p)
        stack.append((state.child(o), int(kids[n, k])))
      continue
    for act in state.legal_actions():
      stack.append((state.child(act), int(kids[n, act])))


def _same_arrays(x: TreeArrays, y: TreeArrays) -> None:
  timing = lambda t: {k: v for k, v in t.meta().items() if k != "compile_s"}
  assert timing(x) == timing(y) and x.info_keys == y.info_keys
  for name in ("infostate", "num_children", "action", "edge_prob_id", "edge_probs",
               "return_id", "return_values", "view", "view_tensors", "info_legal",
               "info_player"):
    a, b = getattr(x, name), getattr(y, name)
    assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_cache_round_trip_keyed_by_game_and_version(tmp_path, monkeypatch):
  monkeypatch.setenv(cache.ENV, str(tmp_path))
  arrays = traverse(load_game("leduc_poker"))
  path = cache.store(arrays)
  assert path == cache.cache_path("leduc_poker") and path.startswith(str(tmp_path))
  with np.load(path, allow_pickle=False) as z:  # plain arrays only: no pickled object
    assert all(z[k].dtype != object for k in z.files)
  _same_arrays(cache.load("leduc_poker"), arrays)
  assert cache.cached_num_nodes("leduc_poker") == 9457
  assert cache.cache_path("kuhn_poker") != path
  assert cache.load("kuhn_poker") is None
  monkeypatch.setattr(cache, "OPENSPIEL_VERSION", "0.0.0")  # another OpenSpiel: another key
  assert cache.cache_path("leduc_poker") != path and cache.load("leduc_poker") is None
  monkeypatch.setenv(cache.ENV, "off")
  assert cache.cache_dir() is None and cache.store(arrays) is None


def test_compile_tree_loads_the_cache_and_rebuilds_a_corrupt_one(tmp_path, monkeypatch,
                                                                  caplog):
  monkeypatch.setenv(cache.ENV, str(tmp_path))
  build = compile_tree.__wrapped__  # past the in-memory cache
  first = build("kuhn_poker")
  path = cache.cache_path("kuhn_poker")
  assert os.path.exists(path)
  _same_arrays(build("kuhn_poker").arrays, first.arrays)
  with open(path, "wb") as f:
    f.write(b"not a zip file")
  with caplog.at_level(logging.WARNING):
    again = build("kuhn_poker")
  assert "compiling the tree again" in caplog.text and path in caplog.text
  _same_arrays(again.arrays, first.arrays)
  _same_arrays(TreeArrays.load(path), first.arrays)  # written back, readable
  # A readable file whose arrays do not fit together is rebuilt too.
  np.savez(path, meta=np.frombuffer(json.dumps(first.arrays.meta()).encode(), np.uint8))
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _same_arrays(build("kuhn_poker").arrays, first.arrays)
  assert "compiling the tree again" in caplog.text


def test_tree_fits_reads_the_cached_node_count(tmp_path, monkeypatch):
  monkeypatch.setenv(cache.ENV, str(tmp_path))
  cache.store(traverse(load_game("leduc_poker")))
  fits = tree_fits.__wrapped__
  assert fits("leduc_poker", 9457) and not fits("leduc_poker", 9456)


@pytest.mark.parametrize("game_string", SMALL_LADDER)
def test_exact_values_equal_openspiel(game_string):
  tree = compile_tree(game_string)
  game = pyspiel.load_game(game_string)
  policies = {"uniform": tree.uniform_policy(), "cfr": _cfr(game_string)}
  for i, p in enumerate(_random_policies(tree, 3, seed=7, alpha=0.3)):
    policies[f"random{i}"] = p
  for name, probs in policies.items():
    pol = tree.to_pyspiel_policy(probs)
    assert tree.exploitability(probs) == pytest.approx(
        pyspiel.exploitability(game, pol), abs=1e-9), name
    ev = pyspiel.expected_returns(game.new_initial_state(), pol, -1, True)
    assert tree.expected_returns(probs).tolist() == pytest.approx(ev, abs=1e-9), name


@pytest.mark.parametrize("game_string", ["kuhn_poker", "leduc_poker",
                                         ladder.rung("goofspiel_4").game])
def test_k_policies_at_once_equal_k_single_evaluations(game_string):
  tree = compile_tree(game_string)
  probs = _random_policies(tree, 5, seed=3)
  chunked = Exact(tree.arrays, work_bytes=1)  # one policy per pass
  for ex in (tree.exact, chunked):
    ev = ex.evaluate(probs)
    nc = ex.nash_conv(probs)
    cfv = ex.best_response_cfv(probs)
    q = ex.action_values(probs, 1)
    reach = ex.reach(probs)
    for k, p in enumerate(probs):
      one = tree.exact.evaluate(p)
      assert torch.equal(ev.values[k], one.values[0])
      assert torch.equal(ev.br_values[k], one.br_values[0])
      assert torch.equal(ev.own_reach[k], one.own_reach[0])
      assert float(nc[k]) == tree.nash_conv(p)
      assert torch.equal(q[k], tree.action_values(p, 1))
      assert torch.equal(reach[k], tree.reach(p))
      single = tree.best_response_cfv(p)
      for f in single._fields:
        assert torch.equal(getattr(cfv, f)[k], getattr(single, f)), f


def test_best_response_cfv_against_a_best_responder():
  """br is a best response: its value equals best_response_values; cfv at the responder's
  states weights the other player's values by the opponents' reach."""
  tree = compile_tree("leduc_poker")
  p = _random_policies(tree, 1, seed=11)[0]
  res = tree.best_response_cfv(p)
  for i in range(2):
    mine = (tree.info_player == i)[:, None]
    profile = torch.where(mine, res.br, p)  # i best-responds, the other plays p
    assert float(tree.expected_returns(profile)[i]) == pytest.approx(
        float(res.br_values[i]), abs=1e-12)
  assert torch.equal(res.br_values, tree.best_response_values(p))
  assert torch.equal(res.values, tree.expected_returns(p))


def test_torch_sums_short_rows_left_to_right():
  """The exact evaluator sums rows whose entries lie in the first SEQUENTIAL_COLUMNS columns
  by index_add (left to right) and relies on torch.sum giving the same bits."""
  gen = torch.Generator().manual_seed(0)
  for width in (2, 3, 4, 5, 6, 7, 8, 13, 16, 26, 52, 64):
    x = torch.zeros(4096, width, dtype=torch.float64)
    cols = min(width, SEQUENTIAL_COLUMNS)
    x[:, :cols] = torch.randn(4096, cols, generator=gen, dtype=torch.float64) * 10.0 ** (
        torch.randint(-8, 8, (4096, cols), generator=gen))
    seq = torch.zeros(4096, dtype=torch.float64)
    for j in range(cols):
      seq = seq + x[:, j]
    assert torch.equal(x.sum(1), seq), width


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("game_string", ["kuhn_poker", "leduc_poker"])
def test_cuda_evaluator_agrees_with_cpu(game_string):
  tree = compile_tree(game_string)
  probs = _random_policies(tree, 4, seed=5)
  gpu, cpu = tree.exact_on("cuda"), tree.exact
  torch.testing.assert_close(gpu.nash_conv(probs), cpu.nash_conv(probs), rtol=0, atol=1e-9)
  a, b = gpu.best_response_cfv(probs), cpu.best_response_cfv(probs)
  for f in ("cfv", "own_reach", "br_values", "values"):
    torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=1e-9)


def test_bench_eval_writes_one_record_per_game(tmp_path):
  out = tmp_path / "bench.json"
  env = {**os.environ, "PYTHONPATH": REPO}
  r = subprocess.run([sys.executable, "-m", "experiments.bench_eval",
                      f"--games=kuhn_poker; {ladder.goofspiel(3)}", f"--out={out}",
                      "--repeats=1", "--batch=2", "--openspiel_max_nodes=60"], cwd=REPO,
                     env=env, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  res = json.loads(out.read_text())
  kuhn = res["kuhn_poker"]
  assert kuhn["nodes"] == 58 and kuhn["infostates"] == 12 and kuhn["agree"] is True
  for key in ("compile_s", "load_s", "peak_rss_mb", "eval_s", "openspiel_s",
              "bytes_per_node", "compile_s_per_node"):
    assert kuhn[key] > 0, key
  skipped = res[ladder.goofspiel(3)]  # 67 nodes, above the limit
  assert skipped["nodes"] > 60 and skipped["openspiel_s"] is None
  assert skipped["agree"] is None and "skipped" in skipped["openspiel"]


def test_fast_exploitabilities_batch_the_tree_calls():
  tree = compile_tree("leduc_poker")
  tables = list(_random_policies(tree, 3, seed=2)) + [tree.uniform_policy()]
  many = evaluation.fast_exploitabilities("leduc_poker", tables)
  assert many == [evaluation.fast_exploitability("leduc_poker", t) for t in tables]
  game = pyspiel.load_game("leduc_poker")
  for (expl, nc), t in zip(many, tables):
    assert expl == pytest.approx(pyspiel.exploitability(game, tree.to_pyspiel_policy(t)),
                                 abs=1e-9)
    assert nc == 2 * expl


@pytest.mark.parametrize("game_string", ["leduc_poker", ladder.rung("goofspiel_4").game])
def test_best_response_order_puts_children_and_states_first(game_string):
  tree = compile_tree(game_string)
  a = tree.arrays
  for i in range(tree.num_players):
    level = tree.exact.best_response_order(i)
    assert (level[a.parent[1:]] > level[1:]).all()  # every node after its children
    assert (level[a.num_children == 0] == 0).all()
    own = np.flatnonzero(a.player == i)
    per_state = {}
    for n, s in zip(own, a.infostate[own]):
      per_state.setdefault(int(s), set()).add(int(level[n]))
    assert all(len(v) == 1 for v in per_state.values())  # a state's nodes share a level
    # Tight: a node one above its highest child, unless held back by its state.
    top = np.zeros(a.num_nodes, dtype=np.int64)
    np.maximum.at(top, a.parent[1:], level[1:])
    inner = np.flatnonzero((a.num_children > 0) & (a.player != i))
    assert (level[inner] == top[inner] + 1).all()
