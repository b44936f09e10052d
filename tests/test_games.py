"""Game layer: validation, sizes, encodings against pyspiel, samplers, enumeration."""

import bisect

import numpy as np
import pytest
import scipy.stats
import torch

import games
from games import GameError, LockstepSampler, StepBatch, infostate_table, load_game
from games.sampler import _Uniforms, sample_actions
from games.infostates import decision_states

ACCEPTED = ["kuhn_poker", "leduc_poker", "leduc_poker(players=3)", "liars_dice(numdice=1)",
            "universal_poker(betting=limit,numPlayers=2,numRounds=2,numSuits=2,numRanks=3,"
            "numHoleCards=1,numBoardCards=0 1,blind=1 1,raiseSize=2 4,maxRaises=2 2,"
            "stack=20 20,firstPlayer=1 1)"]


@pytest.mark.parametrize("game_string", ACCEPTED)
def test_accepts_and_reports_sizes(game_string):
  sg = load_game(game_string)
  g = sg.game
  assert sg.num_players == g.num_players()
  assert sg.num_actions == g.num_distinct_actions()
  assert sg.info_state_size == g.information_state_tensor_shape()[0]
  assert sg.history_size == sg.num_players * sg.info_state_size


@pytest.mark.parametrize("bad, reason", [
    ("no_such_game", "unknown or malformed game 'no_such_game'"),
    ("tic_tac_toe", "does not provide an information-state tensor"),
    ("goofspiel(players=2)", "simultaneous moves"),
    ("", "non-empty"),
])
def test_bad_games_raise_named_errors(bad, reason):
  with pytest.raises(GameError, match=reason):
    load_game(bad)


def _all_decision_states(game_string):
  return list(decision_states(game_string))


@pytest.mark.parametrize("game_string", ["kuhn_poker", "leduc_poker"])
def test_encodings_equal_pyspiel_on_every_state(game_string):
  sg = load_game(game_string)
  states = _all_decision_states(game_string)
  info = sg.info_state_tensors(states).numpy()
  hist = sg.history_tensors(states).numpy()
  mask = sg.legal_masks(states).numpy()
  for i, s in enumerate(states):
    np.testing.assert_array_equal(info[i], np.float32(s.information_state_tensor()))
    for p in range(sg.num_players):
      d = sg.info_state_size
      np.testing.assert_array_equal(hist[i, p * d:(p + 1) * d],
                                    np.float32(s.information_state_tensor(p)))
    assert sorted(np.flatnonzero(mask[i])) == s.legal_actions()


@pytest.mark.parametrize("game_string, n_info", [("kuhn_poker", 12), ("leduc_poker", 936)])
def test_infostate_table_matches_pyspiel(game_string, n_info):
  table = infostate_table(game_string)
  assert len(table) == n_info
  by_key = {}
  for s in _all_decision_states(game_string):
    by_key.setdefault(s.information_state_string(), s)
  assert set(by_key) == set(table.keys)
  for i, key in enumerate(table.keys):
    s = by_key[key]
    np.testing.assert_array_equal(table.tensors[i].numpy(),
                                  np.float32(s.information_state_tensor()))
    assert table.player[i].item() == s.current_player()
    assert sorted(np.flatnonzero(table.legal_mask[i].numpy())) == s.legal_actions()


def uniform_policy(batch):
  m = batch.legal_mask.float()
  return m / m.sum(1, keepdim=True)


def test_lockstep_chance_frequencies_match_chance_outcomes():
  """Chi-square on Leduc's first two deals (6 cards, then 5) with a fixed seed."""
  sg = load_game("leduc_poker")
  tr = LockstepSampler(sg, seed=123).sample(uniform_policy, 3000)
  first = np.bincount(tr.chance[:, 0].numpy(), minlength=6)
  p = scipy.stats.chisquare(first, np.full(6, len(tr.chance) / 6)).pvalue
  assert p > 1e-3
  # Negative control: the same counts against a wrong distribution are rejected.
  wrong = np.array([0.3, 0.1, 0.15, 0.15, 0.15, 0.15]) * len(tr.chance)
  assert scipy.stats.chisquare(first, wrong).pvalue < 1e-6
  # Second card given the first: uniform over the 5 remaining cards.
  pairs = tr.chance[:, :2].numpy()
  second = np.bincount(pairs[pairs[:, 0] == 0, 1], minlength=6)
  assert second[0] == 0
  p2 = scipy.stats.chisquare(second[1:]).pvalue
  assert p2 > 1e-3


def test_same_seed_same_trajectories_and_different_seed_differs():
  sg = load_game("leduc_poker")
  a = LockstepSampler(sg, seed=7).sample(uniform_policy, 64)
  b = LockstepSampler(sg, seed=7).sample(uniform_policy, 64)
  c = LockstepSampler(sg, seed=8).sample(uniform_policy, 64)
  for x, y in zip(a, b):
    if x is not None:
      assert torch.equal(x, y)
  assert not torch.equal(a.chance, c.chance)


def test_trajectories_replay_on_pyspiel():
  """Recorded chance outcomes + actions replayed on pyspiel give the recorded tensors."""
  sg = load_game("leduc_poker")
  tr = LockstepSampler(sg, seed=3).sample(uniform_policy, 32)
  for b in range(32):
    s = sg.new_initial_state()
    chance = [c for c in tr.chance[b].tolist() if c >= 0]
    t = 0
    while not s.is_terminal():
      if s.is_chance_node():
        s.apply_action(chance.pop(0))
        continue
      assert tr.valid[b, t]
      assert tr.player[b, t].item() == s.current_player()
      np.testing.assert_array_equal(tr.info_state[b, t].numpy(),
                                    np.float32(s.information_state_tensor()))
      s.apply_action(tr.action[b, t].item())
      t += 1
    assert t == tr.length[b].item()
    np.testing.assert_array_equal(tr.returns[b].numpy(), np.float32(s.returns()))


def test_policy_called_once_per_step_and_respects_probs():
  sg = load_game("kuhn_poker")
  calls = []

  def always_bet(batch):
    calls.append(len(batch.episode))
    p = torch.zeros(batch.legal_mask.shape)
    p[:, 1] = 1.0
    return p

  tr = LockstepSampler(sg, seed=0).sample(always_bet, 50)
  assert len(calls) == tr.length.max().item() == 2  # bet, call
  assert calls[0] == 50
  assert (tr.action[tr.valid] == 1).all()


def test_make_sampler_rejects_unknown_backend():
  with pytest.raises(ValueError, match="sampler must be one of"):
    games.make_sampler("kuhn_poker", 0, "fast")
  assert isinstance(games.make_sampler("kuhn_poker", 0, "pyspiel"), LockstepSampler)


def test_lockstep_node_cache_limit_changes_nothing():
  """Past the memo limit nodes are recomputed from pyspiel: same episodes either way."""
  sg = load_game("leduc_poker")
  a = LockstepSampler(sg, seed=11).sample(uniform_policy, 128)
  small = LockstepSampler(sg, seed=11, cache_size=7)
  b = small.sample(uniform_policy, 128)
  assert small.num_cached_nodes == 7
  for x, y in zip(a, b):
    if x is not None:
      assert torch.equal(x, y)


def reference_lockstep(sg, rng, policy_fn, batch_size, max_chain=2):
  """The lockstep sampler's rules with one pyspiel state per episode and nothing cached:
  per step a pool of max_chain uniforms per game still playing, read in episode order by
  its chance nodes (inverse CDF on the normalised cumulative sums), then single draws once
  the pool is spent; then one uniform per action (`sample_actions`)."""
  n, a_dim, d = sg.num_players, sg.num_actions, sg.info_state_size
  states = [sg.new_initial_state() for _ in range(batch_size)]
  chance = [[] for _ in range(batch_size)]
  active, steps = list(range(batch_size)), []
  while True:
    u = iter(rng.random(len(active) * max_chain).tolist())
    still = []
    for i in active:
      s = states[i]
      while s.is_chance_node():
        outcomes, probs = zip(*s.chance_outcomes())
        cdf = np.cumsum(probs)
        x = next(u, None)
        x = rng.random() if x is None else x
        o = outcomes[min(bisect.bisect_right((cdf / cdf[-1]).tolist(), x), len(outcomes) - 1)]
        chance[i].append(o)
        s.apply_action(o)
      if not s.is_terminal():
        still.append(i)
    active = still
    if not active:
      break
    r = len(active)
    hist = np.asarray([sum((states[i].information_state_tensor(p) for p in range(n)), [])
                       for i in active], dtype=np.float32)
    player = np.asarray([states[i].current_player() for i in active])
    info = hist.reshape(r, n, d)[np.arange(r), player]
    mask = np.zeros((r, a_dim), dtype=bool)
    for j, i in enumerate(active):
      mask[j, states[i].legal_actions()] = True
    probs = policy_fn(StepBatch(torch.from_numpy(info), torch.from_numpy(mask),
                                torch.from_numpy(player), torch.tensor(active), len(steps)))
    acts = sample_actions(probs, torch.from_numpy(mask), rng.random(r)).tolist()
    for i, a in zip(active, acts):
      states[i].apply_action(a)
    steps.append((active, info, hist, mask, player, acts, probs.float().numpy()))
  t_max, c_max = max(len(steps), 1), max(max(len(c) for c in chance), 1)
  out = dict(info_state=np.zeros((batch_size, t_max, d), np.float32),
             history=np.zeros((batch_size, t_max, n * d), np.float32),
             legal_mask=np.zeros((batch_size, t_max, a_dim), bool),
             player=np.full((batch_size, t_max), -1), action=np.full((batch_size, t_max), -1),
             behaviour=np.zeros((batch_size, t_max, a_dim), np.float32))
  for t, step in enumerate(steps):
    for k, v in zip(("info_state", "history", "legal_mask", "player", "action", "behaviour"),
                    step[1:]):
      out[k][step[0], t] = v
  out["chance"] = np.asarray([c + [-1] * (c_max - len(c)) for c in chance])
  out["returns"] = np.asarray([s.returns() for s in states], dtype=np.float32)
  out["length"] = (out["player"] >= 0).sum(1)
  return out


def softmax_policy(sg):
  """A fixed random linear softmax policy: the draws depend on the probabilities."""
  g = torch.Generator().manual_seed(0)
  w = torch.randn(sg.info_state_size, sg.num_actions, generator=g)

  def policy(batch):
    return torch.softmax((batch.info_state @ w).masked_fill(~batch.legal_mask, -1e9), 1)
  return policy


@pytest.mark.parametrize("game_string,cache_size", [
    ("leduc_poker", 1_000_000), ("leduc_poker", 60), ("kuhn_poker", 1),
    # four chance nodes in a row (more than the pool of two per game), 16 deals
    ("liars_dice(numdice=2,dice_sides=2)", 1_000_000), ("liars_dice(numdice=2,dice_sides=2)", 300),
    ("turn_based_simultaneous_game(game=goofspiel(imp_info=True,num_cards=4,"
     "points_order=descending,returns_type=win_loss))", 1_000_000)])
def test_lockstep_equals_the_per_episode_reference(game_string, cache_size):
  """Bit for bit, batch after batch (the node cache fills, then overflows when small), with
  the generator left in the same state."""
  sg = load_game(game_string)
  policy = softmax_policy(sg)
  sampler = LockstepSampler(sg, seed=5, cache_size=cache_size)
  rng = np.random.default_rng(5)
  for batch_size in (64, 1, 200, 200, 500):
    tr = sampler.sample(policy, batch_size)
    ref = reference_lockstep(sg, rng, policy, batch_size)
    for k, v in ref.items():
      np.testing.assert_array_equal(getattr(tr, k).numpy(), v, err_msg=k)
    assert tr.valid.numpy().tolist() == (ref["player"] >= 0).tolist()
    assert sampler.rng.bit_generator.state == rng.bit_generator.state
  assert sampler.num_cached_nodes <= cache_size


def test_uniform_pool_reads_ahead_without_consuming():
  """Reading past the pool and settling on fewer leaves the generator where single draws
  would: at max(pool, used) uniforms."""
  for used in (0, 3, 10, 11, 25):
    rng, ref = np.random.default_rng(1), np.random.default_rng(1)
    pool = _Uniforms(rng, 10)
    u = pool.upto(30)[:used]
    pool.settle(used)
    want = ref.random(10).tolist() + [ref.random() for _ in range(max(used - 10, 0))]
    assert u.tolist() == want[:used]
    assert rng.random() == ref.random()
