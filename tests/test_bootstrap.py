"""regret_fit=bootstrap: the cumulative-sum arithmetic, the encoding memory, ARMAC wiring."""

import pytest
import torch

from armac_spiel import config as config_lib
from armac_spiel.armac import ARMAC
from armac_spiel.bootstrap import CumulativeRegrets
from armac_spiel.networks import regret_matching
from tests.conftest import TINY

TINY_BOOT = dict(TINY, max_snapshots=1, policy_draw="current", regret_fit="bootstrap")


class TableNet:
  """A 'network' that fits perfectly: one-hot encodings select rows of a table."""

  def __init__(self, n, a):
    self.table = torch.randn(n, a)  # never-sampled states must not read this back

  def __call__(self, x):
    return x @ self.table

  def fit(self, x, y):
    self.table[x.argmax(1)] = y


def _epochs(n_states=6, n_actions=3, epochs=12, seed=0):
  g = torch.Generator().manual_seed(seed)
  eye = torch.eye(n_states)
  player = torch.arange(n_states) % 2
  for t in range(epochs):
    rows = torch.randint(n_states, (40,), generator=g)
    rows = rows[player[rows] == t % 2]  # alternating updates: one player's states per epoch
    mask = torch.ones(len(rows), n_actions, dtype=torch.bool)
    mask[rows == 0, 2] = False  # state 0 has two legal actions
    adv = torch.randn(len(rows), n_actions, generator=g) * mask
    w = torch.rand(len(rows), generator=g) + 0.5
    yield t, eye[rows], mask, player[rows], adv, w, rows


@pytest.mark.parametrize("linear, dcfr, plus", [(False, False, False), (True, False, False),
                                                (False, True, False), (True, False, True),
                                                (False, True, True)])
def test_cumulative_sums_match_the_tabular_recursion(linear, dcfr, plus):
  """With a network that fits exactly, W * scale is CFR's (linear / DCFR / RM+) cumulative
  regret table, updated for the epoch's player only, new states starting from 0."""
  n, a_n = 6, 3
  cum, net = CumulativeRegrets(capacity=100), TableNet(n, a_n)
  exact = torch.zeros(n, a_n, dtype=torch.float64)
  legal = torch.ones(n, a_n, dtype=torch.bool)
  legal[0, 2] = False
  player = torch.arange(n) % 2
  for t, x, mask, pl, adv, w, rows in _epochs():
    k = t // 2
    disc = (k ** 1.5 / (k ** 1.5 + 1), 0.5) if dcfr and k > 0 else None
    c = t + 1.0 if linear else 1.0
    if disc is not None:
      mine = (player == t % 2)[:, None]
      exact = torch.where(mine, exact * torch.where(exact > 0, disc[0], disc[1]), exact)
    exact.index_add_(0, rows, c * w.double()[:, None] * adv.double())
    if plus:
      exact = exact.clamp_min(0)
    xs, y, m, ws = cum.epoch_targets(net, t, t % 2, x, mask, pl, adv, w, weight_t=c,
                                     discount=disc, plus=plus)
    net.fit(xs, y)
    ids = xs.argmax(1)
    assert torch.equal(m, legal[ids])
    assert torch.allclose(y.double() * cum.scale, exact[ids], rtol=1e-4, atol=1e-5)
    # Unit RMS over the remembered states; relative weights 1 / (mean square + floor).
    assert float((y.pow(2).sum(1) / m.sum(1)).mean()) == pytest.approx(1.0, rel=1e-4)
    assert torch.all(ws > 0)
  assert torch.allclose(regret_matching(y.double(), m), regret_matching(exact[ids], m))


def test_memory_keeps_the_most_recent_encodings_and_maps_rows():
  cum = CumulativeRegrets(capacity=3)
  eye = torch.eye(5)
  ones = lambda k: torch.ones(k, 2, dtype=torch.bool)
  zero = lambda k: torch.zeros(k, dtype=torch.long)
  at, new = cum._merge(eye[[0, 1]], ones(2), zero(2), epoch=0)
  assert cum.info[at].argmax(1).tolist() == [0, 1] and new.all()
  at, new = cum._merge(eye[[1, 2, 3]], ones(3), zero(3), epoch=1)  # state 0 is the oldest
  assert len(cum) == 3 and sorted(cum.info.argmax(1).tolist()) == [1, 2, 3]
  assert cum.info[at].argmax(1).tolist() == [1, 2, 3]
  was_new = {int(i): bool(b) for i, b in zip(cum.info.argmax(1), new)}
  assert was_new == {1: False, 2: True, 3: True} and cum.seen.tolist() == [1, 1, 1]


def test_bootstrap_config_needs_current_draws_and_plus_needs_bootstrap():
  with pytest.raises(config_lib.ConfigError, match="'regret_fit'.*policy_draw"):
    config_lib.from_dict({"regret_fit": "bootstrap", "policy_draw": "balanced"})
  with pytest.raises(config_lib.ConfigError, match="'regret_plus'"):
    config_lib.from_dict({"regret_plus": True})
  with pytest.raises(config_lib.ConfigError, match="'actor_fit'"):
    config_lib.from_dict({"actor_fit": "bootstrap"})
  config_lib.from_dict({"regret_fit": "bootstrap", "policy_draw": "current",
                        "regret_discount": "dcfr", "regret_plus": True})


@pytest.mark.parametrize("game, sampler", [("kuhn_poker", "tree"), ("leduc_poker", "pyspiel")])
def test_armac_bootstrap_runs_fits_and_round_trips(tmp_path, game, sampler):
  cfg = config_lib.ARMACConfig(**{**TINY_BOOT, "regret_steps": 50, "regret_hidden": (64,)},
                               sampler=sampler, regret_plus=True)
  a = ARMAC(game, cfg, seed=0)
  for _ in range(3):
    out = a.step()
  assert out["regret_loss"] < 0.05, out  # warm-started fits of the cumulative targets
  assert len(a.regret_fit.cumulative) > 0 and a.regret_fit.pending is None  # no replay
  path = tmp_path / "c.pt"
  torch.save(a.state_dict(), path)
  b = ARMAC(game, cfg, seed=0)
  d = torch.load(path, weights_only=True)
  b.load_state_dict(d)
  for x, y in zip(a.regret_fit.cumulative.state_dict().values(),
                  b.regret_fit.cumulative.state_dict().values()):
    assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
  assert a.step() == b.step()
  d["regret_fit"] = {**d["regret_fit"], "fit": "rows"}
  with pytest.raises(ValueError, match="regret_fit=bootstrap.*regret_fit=rows"):
    ARMAC(game, cfg, seed=0).load_state_dict(d)
