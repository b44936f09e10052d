"""Compiled-tree backend: tree vs pyspiel on every node, sampler statistics, exact evaluation."""

import numpy as np
import pyspiel
import pytest
import scipy.stats
import torch

from games import (GameError, LockstepSampler, StepBatch, TablePolicy, Trajectories, load_game,
                   make_sampler)
from games.tree import (CHANCE, DECISION, TERMINAL, TreeSampler, compile_tree, exact_q,
                        tree_fits)

SMALL = ["kuhn_poker", "leduc_poker"]
# Limit hold'em: far beyond the node limit (its Knuth estimate refuses it at once).
HUGE = ("universal_poker(betting=limit,numPlayers=2,numRounds=4,blind=1 2,raiseSize=2 2 4 4,"
        "firstPlayer=1 2 2 2,maxRaises=3 4 4 4,numSuits=4,numRanks=13,numHoleCards=2,"
        "numBoardCards=0 3 1 1)")


def _mlp_policy(d, a, seed=0):
  """A small random MLP with a masked softmax, as a batched policy."""
  g = torch.Generator().manual_seed(seed)
  w1, w2 = torch.randn(d, 16, generator=g), torch.randn(16, a, generator=g)

  def policy(batch):
    logits = torch.relu(batch.info_state @ w1) @ w2
    return torch.softmax(logits.masked_fill(~batch.legal_mask, -torch.inf), 1)
  return policy


def _random_policy(tree, seed):
  rng = np.random.default_rng(seed)
  p = torch.from_numpy(rng.dirichlet(np.ones(tree.num_actions), tree.num_infostates))
  p = p * tree.info_legal
  return p / p.sum(1, keepdim=True)


def _cfr_plus(game_string, iters):
  game = pyspiel.load_game(game_string)
  solver = pyspiel.CFRPlusSolver(game)
  for _ in range(iters):
    solver.evaluate_and_update_policy()
  avg = solver.average_policy()
  tree = compile_tree(game_string)
  probs = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
  for s, key in enumerate(tree.info_keys):
    for a, p in avg.action_probabilities(key).items():
      probs[s, a] = p
  return probs, avg, solver  # the average policy refers into the solver: keep it alive


@pytest.mark.parametrize("game_string", SMALL)
def test_every_node_matches_pyspiel(game_string):
  tree = compile_tree(game_string)
  n = tree.num_players
  history = tree.history
  stack = [(pyspiel.load_game(game_string).new_initial_state(), 0, 0)]
  seen = 0
  while stack:
    state, node, depth = stack.pop()
    seen += 1
    assert int(tree.depth[node]) == depth
    views = [state.information_state_tensor(p) for p in range(n)]
    if state.is_terminal() or state.is_chance_node():  # views are kept at decisions only
      assert not history[node].any()
    else:
      assert history[node].tolist() == pytest.approx(sum(views, []), abs=0)
    if state.is_terminal():
      assert int(tree.kind[node]) == TERMINAL
      assert tree.returns[node].tolist() == state.returns()
      assert (tree.children[node] == -1).all()
      continue
    if state.is_chance_node():
      assert int(tree.kind[node]) == CHANCE and int(tree.infostate[node]) == -1
      outcomes = state.chance_outcomes()
      for k, (a, p) in enumerate(outcomes):
        assert int(tree.chance_outcome[node, k]) == a
        assert float(tree.chance_prob[node, k]) == p
        child = int(tree.children[node, k])
        assert int(tree.parent[child]) == node
        stack.append((state.child(a), child, depth + 1))
      assert (tree.children[node, len(outcomes):] == -1).all()
      continue
    p = state.current_player()
    s = int(tree.infostate[node])
    assert int(tree.kind[node]) == DECISION and int(tree.player[node]) == p
    assert tree.info_keys[s] == state.information_state_string(p)
    assert tree.info_tensors[s].tolist() == views[p]
    assert tree.info_state_of(torch.tensor([node]))[0].tolist() == views[p]
    legal = state.legal_actions()
    assert torch.nonzero(tree.legal_mask[node]).squeeze(1).tolist() == legal
    assert torch.nonzero(tree.info_legal[s]).squeeze(1).tolist() == legal
    for a in range(tree.num_actions):
      child = int(tree.children[node, a])
      assert (child >= 0) == (a in legal)
      if child >= 0:
        assert int(tree.parent[child]) == node and int(tree.parent_slot[child]) == a
        stack.append((state.child(a), child, depth + 1))
  assert seen == tree.num_nodes


def test_chance_frequencies_chi_square():
  game = pyspiel.load_game("leduc_poker")
  sampler = TreeSampler(load_game("leduc_poker"), seed=123)
  traj = sampler.sample(_mlp_policy(30, 3), 20000)
  root = game.new_initial_state()
  # The first two deals, jointly: 6 * 5 ordered pairs.
  cells, expected = {}, []
  for a, pa in root.chance_outcomes():
    for b, pb in root.child(a).chance_outcomes():
      cells[(a, b)] = len(expected)
      expected.append(pa * pb)
  expected = np.asarray(expected)
  counts = np.zeros(len(expected))
  for a, b in traj.chance[:, :2].tolist():
    counts[cells[(a, b)]] += 1
  total = counts.sum()
  assert total == 20000
  assert scipy.stats.chisquare(counts, expected * total).pvalue > 1e-3
  # Negative control: a 20% skew of the expected probabilities must be rejected.
  wrong = expected * np.where(np.arange(len(expected)) % 2 == 0, 1.2, 0.8)
  wrong /= wrong.sum()
  assert scipy.stats.chisquare(counts, wrong * total).pvalue < 1e-3


def _assert_same(t1, t2):
  for x, y in zip(t1, t2):
    assert torch.equal(x, y)


def test_seeded_reproducibility():
  sgame = load_game("leduc_poker")
  policy = _mlp_policy(30, 3)
  a = TreeSampler(sgame, 7).sample(policy, 500)
  b = TreeSampler(sgame, 7).sample(policy, 500)
  c = TreeSampler(sgame, 8).sample(policy, 500)
  _assert_same(a, b)
  assert not torch.equal(a.action, c.action) or not torch.equal(a.chance, c.chance)


def test_make_sampler_backends():
  assert isinstance(make_sampler("leduc_poker", 0, "tree"), TreeSampler)
  assert isinstance(make_sampler("leduc_poker", 0, "auto"), TreeSampler)
  assert isinstance(make_sampler("leduc_poker", 0, "pyspiel"), LockstepSampler)
  assert not tree_fits(HUGE)
  s = make_sampler(HUGE, 0, "auto")
  assert isinstance(s, LockstepSampler) and not isinstance(s, TreeSampler)


def test_too_small_max_nodes_raises():
  with pytest.raises(GameError, match="leduc_poker"):
    compile_tree("leduc_poker", max_nodes=100)


@pytest.mark.parametrize("game_string", SMALL)
def test_trajectories_replay_on_pyspiel(game_string):
  sgame = load_game(game_string)
  tree = compile_tree(game_string)
  n = sgame.num_players
  traj = TreeSampler(sgame, 3).sample(_mlp_policy(sgame.info_state_size, sgame.num_actions), 300)
  assert traj.node is not None
  for i in range(traj.batch_size):
    state = sgame.new_initial_state()
    ci = t = 0
    while not state.is_terminal():
      if state.is_chance_node():
        outcome = int(traj.chance[i, ci])
        assert outcome in [a for a, _ in state.chance_outcomes()]
        state.apply_action(outcome)
        ci += 1
        continue
      p = state.current_player()
      assert bool(traj.valid[i, t]) and int(traj.player[i, t]) == p
      assert traj.info_state[i, t].tolist() == state.information_state_tensor(p)
      views = sum((state.information_state_tensor(q) for q in range(n)), [])
      assert traj.history[i, t].tolist() == views
      legal = state.legal_actions()
      assert torch.nonzero(traj.legal_mask[i, t]).squeeze(1).tolist() == legal
      node = int(traj.node[i, t])
      assert tree.info_keys[int(tree.infostate[node])] == state.information_state_string(p)
      beh = traj.behaviour[i, t]
      assert float(beh.sum()) == pytest.approx(1.0, abs=1e-5)
      a = int(traj.action[i, t])
      assert a in legal and float(beh[a]) > 0
      state.apply_action(a)
      t += 1
    assert int(traj.length[i]) == t and not traj.valid[i, t:].any()
    assert (traj.chance[i, ci:] == -1).all()
    assert traj.returns[i].tolist() == state.returns()


@pytest.mark.parametrize("game_string", SMALL)
def test_exact_evaluation_matches_pyspiel(game_string):
  tree = compile_tree(game_string)
  game = pyspiel.load_game(game_string)
  cfr, cfr_pyspiel, _solver = _cfr_plus(game_string, 20)
  policies = {"uniform": tree.uniform_policy(), "random": _random_policy(tree, 0),
              "tabulated_mlp": tree.tabulate(
                  _mlp_policy(tree.info_tensors.shape[1], tree.num_actions)),
              "cfr_plus": cfr}
  for name, probs in policies.items():
    pol = tree.to_pyspiel_policy(probs)
    assert tree.nash_conv(probs) == pytest.approx(pyspiel.nash_conv(game, pol), abs=1e-9), name
    assert tree.exploitability(probs) == pytest.approx(
        pyspiel.exploitability(game, pol), abs=1e-9), name
    ev = pyspiel.expected_returns(game.new_initial_state(), pol, -1, True)
    assert tree.expected_returns(probs).tolist() == pytest.approx(ev, abs=1e-9), name
  # CFR+ against the solver's own policy object, not our conversion of it.
  assert tree.nash_conv(cfr) == pytest.approx(
      pyspiel.nash_conv(game, cfr_pyspiel, True), abs=1e-9)
  assert tree.exploitability(cfr) == pytest.approx(
      pyspiel.exploitability(game, cfr_pyspiel), abs=1e-9)
  assert tree.exploitability(cfr) < tree.exploitability(policies["uniform"])


def test_three_player_nash_conv():
  game_string = "kuhn_poker(players=3)"
  tree = compile_tree(game_string)
  game = pyspiel.load_game(game_string)
  for probs in (tree.uniform_policy(), _random_policy(tree, 1)):
    ref = pyspiel.nash_conv(game, tree.to_pyspiel_policy(probs))
    assert tree.nash_conv(probs) == pytest.approx(ref, abs=1e-9)
  with pytest.raises(GameError):
    tree.exploitability(tree.uniform_policy())


def test_sample_actions_inverse_cdf_edges():
  from games.sampler import sample_actions
  probs = torch.tensor([[0.3, 0.7, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
  legal = torch.tensor([[True, True, True], [True, True, True], [True, True, False],
                        [True, True, True]])
  top = np.nextafter(1.0, 0.0)
  assert sample_actions(probs, legal, np.full(4, top)).tolist() == [1, 2, 1, 1]
  assert sample_actions(probs, legal, np.zeros(4)).tolist() == [0, 0, 0, 1]
  # Cut points: action k is drawn for u * total in [cdf[k-1], cdf[k]).
  assert sample_actions(probs[2:3], legal[2:3], np.asarray([0.4])).tolist() == [1]


@pytest.mark.parametrize("game_string", SMALL + ["liars_dice(numdice=1)"])
def test_table_policy_path_draws_the_same_episodes(game_string):
  """A TablePolicy (one call on every information state, then table look-ups) plays exactly
  the episodes the per-step path plays with the same seed and the same policy."""
  sgame = load_game(game_string)
  d, a = sgame.info_state_size, sgame.num_actions
  rowwise = _mlp_policy(d, a, seed=4)
  table = TablePolicy(lambda x, m: rowwise(StepBatch(x, m, None, None, 0)))
  x = TreeSampler(sgame, 11).sample(rowwise, 3000)
  y = TreeSampler(sgame, 11).sample(table, 3000)
  for name in ("info_state", "history", "legal_mask", "player", "action", "valid", "length",
               "returns", "chance", "node"):
    assert torch.equal(getattr(x, name), getattr(y, name)), name
  torch.testing.assert_close(x.behaviour, y.behaviour, rtol=0, atol=1e-6)


@pytest.mark.parametrize("game_string", SMALL)
def test_guide_table_equals_searchsorted(game_string):
  ts = TreeSampler(load_game(game_string), 0)
  cp = ts._paths
  rng = np.random.default_rng(5)
  seg = rng.integers(len(cp.last), size=100_000)
  u = rng.random(100_000)
  u[:4] = [0.0, np.nextafter(1.0, 0.0), 0.5, 0.25]  # bin edges and the top of [0, 1)
  want = np.minimum(np.searchsorted(cp.cum, seg + u, side="right"), cp.last[seg])
  assert np.array_equal(ts._path_rows(seg, u), want)


def test_lazy_trajectory_fields_are_gathered_once():
  calls = []

  def info():
    calls.append(1)
    return torch.ones(2, 1, 3)

  z = torch.zeros(2, 1, dtype=torch.long)
  traj = Trajectories(info, info, z, z, z, z, z.bool(), z[:, 0], z.float(), z)
  assert traj.info_state.shape == (2, 1, 3) and traj.info_state is traj.info_state
  assert len(calls) == 1


@pytest.mark.parametrize("game", ["kuhn_poker", "leduc_poker"])
def test_exact_q_satisfies_the_bellman_equations(game):
  t = compile_tree(game)
  probs = torch.rand(t.num_infostates, t.num_actions, generator=torch.Generator().manual_seed(0),
                     dtype=torch.float64) * t.info_legal
  probs /= probs.sum(1, keepdim=True)
  q = exact_q(t, probs)

  def value(n):  # player 0's value of node n, from q where it is a decision
    if t.kind[n] == TERMINAL:
      return float(t.returns[n, 0])
    if t.kind[n] == DECISION:
      return float((probs[t.infostate[n]] * q[n]).sum())
    kids = t.children[n]
    return sum(float(t.chance_prob[n, k]) * value(int(c)) for k, c in enumerate(kids) if c >= 0)

  dec = (t.kind == DECISION).nonzero().squeeze(1)
  for n in dec[torch.randperm(len(dec), generator=torch.Generator().manual_seed(1))[:300]]:
    for a in t.legal_mask[n].nonzero().squeeze(1):
      assert abs(float(q[n, a]) - value(int(t.children[n, a]))) < 1e-9
  assert abs(value(0) - float(t.expected_returns(probs)[0])) < 1e-9
