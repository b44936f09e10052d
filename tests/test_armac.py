"""ARMAC: smoke runs over games, correctness on Kuhn, checkpoints, resume, bad input."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import NamedTuple, Optional

import numpy as np
import pytest
import torch
from open_spiel.python import policy as os_policy
from open_spiel.python.algorithms import exploitability as os_exploitability

from armac_spiel import config as config_lib
from armac_spiel import evaluation, policy_io, runs
from armac_spiel.runs import rundir
from armac_spiel import fits, records
from armac_spiel import networks as networks_lib
from armac_spiel.armac import ARMAC, CURRENT, NonFiniteLossError, content_ids, unique_forward
from armac_spiel.buffers import TensorBuffer
from armac_spiel.networks import MLP, SnapshotBank, regret_matching
from armac_spiel.records import RegretRows
from armac_spiel.safe_load import load_tensor_file, tensor_bytes
from tests.conftest import REPO, TINY



@pytest.mark.parametrize("game, sampler", [("kuhn_poker", "tree"), ("leduc_poker", "tree"),
                                           ("leduc_poker", "pyspiel"),
                                           ("liars_dice(numdice=1)", "pyspiel"),
                                           ("kuhn_poker(players=3)", "tree")])
def test_smoke_epochs_give_valid_policies(game, sampler):
  a = ARMAC(game, config_lib.ARMACConfig(**TINY, sampler=sampler), seed=0)
  for _ in range(3):
    out = a.step()
  assert all(np.isfinite(out[k]) for k in ("critic_loss", "regret_loss", "actor_loss"))
  for pol in (a.average_policy(), a.current_policy()):
    assert isinstance(pol, os_policy.Policy)
    evaluation.validate_table(game, pol.table())
  state = a.sgame.new_initial_state()
  while state.is_chance_node():
    state.apply_action(state.chance_outcomes()[0][0])
  probs = a.average_policy().action_probabilities(state)
  assert sorted(probs) == state.legal_actions()
  assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)


def test_unique_forward_gives_the_same_outputs_and_gradients():
  torch.manual_seed(0)
  net = MLP(5, (8,), 3)
  base = torch.randn(6, 5)
  ids = torch.tensor([[4, 1, 4, 0], [2, 1, 5, 4], [3, 3, 0, 2]])  # (3, 4) rows of 6 ids
  x = base[ids]
  y = torch.randn(3, 4, 3)
  grads = []
  for f in (lambda: net(x), lambda: unique_forward(net, x, ids)):
    net.zero_grad()
    out = f()
    ((out - y) ** 2).sum().backward()
    grads.append([p.grad.clone() for p in net.parameters()])
    assert out.shape == (3, 4, 3)
  torch.testing.assert_close(unique_forward(net, x, ids), net(x))
  for a, b in zip(*grads):
    torch.testing.assert_close(a, b)


def test_unique_forward_from_a_table_gives_the_same_bits():
  """table= reads the distinct rows from the encodings table instead of gathering one row
  per id: the same rows in the same order, so bit-identical outputs (and x is not read)."""
  torch.manual_seed(0)
  net = MLP(5, (8,), 3)
  table = torch.randn(7, 5)
  ids = torch.tensor([[6, 1, 6, 0], [2, 1, 5, 6], [3, 3, 0, 2]])
  assert torch.equal(unique_forward(net, None, ids, table), unique_forward(net, table[ids], ids))
  # a table whose rows are not the inputs' gives other outputs: the table is what is read
  assert not torch.equal(unique_forward(net, None, ids, table.flip(0)),
                         unique_forward(net, table[ids], ids))


def test_content_ids_group_equal_rows_exactly(monkeypatch):
  base = torch.tensor([[0., 1., 0.], [1., 0., 0.], [1., 1., 0.], [0., 0., 1.]])
  ids = torch.tensor([[3, 1, 3], [0, 2, 1]])
  got = content_ids(base[ids])
  assert got.shape == ids.shape
  # Same partition of the rows: equal rows share an id, different rows do not.
  assert torch.equal(got.reshape(-1)[:, None] == got.reshape(-1)[None],
                     ids.reshape(-1)[:, None] == ids.reshape(-1)[None])
  # A projection under which different rows collide: no ids (every row runs), never a merge.
  monkeypatch.setattr(networks_lib, "_PROJECTIONS",
                      {(3, "cpu"): torch.zeros(3, dtype=torch.float64)})
  assert content_ids(base[ids]) is None


@pytest.mark.parametrize("alternating", [True, False])
def test_alternating_updates_assign_the_learner_per_policy(alternating):
  """With alternating updates, episodes replaying policy j learn for player j mod 2 only;
  current groups (mean-policy data) keep alternating by episode."""
  cfg = config_lib.ARMACConfig(**{**TINY, "policy_draw": "uniform", "max_snapshots": 8},
                               alternating_updates=alternating)
  a = ARMAC("kuhn_poker", cfg, seed=0)
  for _ in range(5):
    a.step()
  slots = torch.tensor([CURRENT, 0, 1, CURRENT])
  _, learner = a.sample_episodes(slots)
  per = cfg.episodes_per_epoch // cfg.groups_per_epoch
  alt = torch.arange(per) % 2
  epochs = a.draw.slot_epochs(slots, a.epoch)
  assert torch.equal(learner[:per], alt)
  for g in range(1, 4):
    want = torch.full((per,), int(epochs[g]) % 2) if alternating else alt
    assert torch.equal(learner[g * per:(g + 1) * per], want), g


def test_regret_matching_is_normalized_relu_and_uniform_when_none_positive():
  mask = torch.tensor([[True, True, False], [True, True, True]])
  r = torch.tensor([[3.0, 1.0, 5.0], [-1.0, -2.0, 0.0]])
  p = regret_matching(r, mask)
  assert torch.allclose(p, torch.tensor([[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_policy_buffer_is_bounded_and_thins_uniformly():
  net = MLP(3, (4,), 2)
  bank = SnapshotBank({"w": net}, capacity=8, device="cpu")
  rng = np.random.default_rng(0)
  for e in range(500):
    bank.push({"w": net}, e, rng)
  assert bank.size == 8 and bank.pushes == 500
  kept = bank.epoch.numpy()
  assert len(set(kept)) == 8 and kept.max() > 250  # a spread sample, not the first 8
  x = torch.randn(2, 5, 3)
  out = bank.forward("w", torch.tensor([0, 3]), x)
  assert torch.allclose(out[1], net(x[1]), atol=1e-6)


@pytest.fixture(scope="module")
def base_yaml(tmp_path_factory):
  """An empty config file: the ARMACConfig defaults, not experiments/configs/kuhn_poker.yaml."""
  path = tmp_path_factory.mktemp("cfg") / "base.yaml"
  path.write_text("{}\n")
  return str(path)


def _train(out_dir, base_yaml, game="kuhn_poker", resume=False, **kw):
  spec = runs.resolve_spec("armac", game, 3, str(out_dir), config_path=base_yaml,
                           sets={**TINY, **kw}, device="cpu", plot=False, resume=resume)
  return runs.run(spec)


def test_independent_check_policy_json_matches_python_exploitability(tmp_path, base_yaml):
  rows = _train(tmp_path, base_yaml, max_epochs=6)
  game_string, probs = policy_io.import_policy(str(tmp_path / "policy.json"))
  game = evaluation.load_game(game_string).game
  theirs = os_exploitability.exploitability(
      game, evaluation.to_openspiel_tabular(game_string, probs))
  assert abs(rows[-1]["exploitability"] - theirs) < 1e-6
  for key in ("epoch", "episodes", "train_s", "eval_s", "exploitability", "nash_conv",
              "exploitability_current", "critic_loss", "regret_loss", "actor_loss",
              "steps_per_s"):
    assert key in rows[-1]
  assert json.loads((tmp_path / "config.json").read_text())["hparams"]["max_epochs"] == 6
  assert "git_commit" in json.loads((tmp_path / "provenance.json").read_text())


def test_nan_loss_is_a_named_error():
  a = ARMAC("kuhn_poker", config_lib.ARMACConfig(**TINY), seed=0)
  a.step()
  a.critic_fit.replay.data["returns"][:] = float("nan")
  with pytest.raises(NonFiniteLossError, match="critic loss is nan"):
    a.step()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, base_yaml):
  _train(tmp_path, base_yaml, max_epochs=2)
  ck = tmp_path / "checkpoint.pt"
  ck.write_bytes(ck.read_bytes()[:100])
  with pytest.raises(rundir.CheckpointError, match="corrupt"):
    _train(tmp_path, base_yaml, max_epochs=4, resume=True)


def test_existing_run_needs_resume(tmp_path, base_yaml):
  _train(tmp_path, base_yaml, max_epochs=2)
  with pytest.raises(config_lib.ConfigError, match="--resume"):
    _train(tmp_path, base_yaml, max_epochs=2)


@pytest.mark.parametrize("bad, field", [
    ({"explore_eps": 2.0}, "explore_eps"), ({"sampler": "fast"}, "sampler"),
    ({"critic_hidden": []}, "critic_hidden"), ({"episodes_per_epoch": 65}, "episodes_per_epoch"),
    ({"regret_lr": -1.0}, "regret_lr"), ({"scheduler_mode": "on"}, "scheduler_mode"),
    ({"alternating_updates": "yes"}, "alternating_updates"),
    ({"policy_draw": "newest"}, "policy_draw"), ({"regret_fit": "tabular"}, "regret_fit"),
    ({"regret_fit": "states", "sampler": "pyspiel"}, "regret_fit"),
    ({"actor_fit": "table"}, "actor_fit"), ({"actor_fit": "states", "sampler": "pyspiel"},
                                           "actor_fit"),
    ({"regret_lstsq": 8}, "regret_lstsq"), ({"regret_lstsq": -1, "regret_fit": "states"},
                                            "regret_lstsq"),
    ({"regret_lstsq": True, "regret_fit": "states"}, "regret_lstsq")])
def test_config_errors_name_the_field(bad, field):
  with pytest.raises(config_lib.ConfigError, match=f"'{field}'"):
    config_lib.from_dict(bad)


def test_unknown_config_key_is_named(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="critic_hiden"):
    config_lib.from_dict({"critic_hiden": [8]})


def test_set_flag_values_parse_and_bad_ones_are_named():
  got = config_lib.parse_sets(["critic_lr=0.003,actor_fit=states", "critic_hidden=[64,32]"])
  assert got == {"critic_lr": 0.003, "actor_fit": "states", "critic_hidden": [64, 32]}
  cfg = config_lib.from_dict(got)
  assert cfg.critic_hidden == (64, 32) and cfg.actor_fit == "states"
  with pytest.raises(config_lib.ConfigError, match="--set.*'critic_lr'"):
    config_lib.parse_sets(["critic_lr"])


def test_train_cli_set_reaches_config_json_and_unknown_keys_are_named(tmp_path):
  run = tmp_path / "run"
  subprocess.run(_cli(run, "--max_epochs=1", "--eval_every=1",
                      "--set=critic_lr=0.002,episodes_per_epoch=64"),
                 cwd=REPO, check=True, capture_output=True)
  cfg = json.loads((run / "config.json").read_text())["hparams"]
  assert cfg["critic_lr"] == 0.002 and cfg["episodes_per_epoch"] == 64
  bad = subprocess.run(_cli(tmp_path / "bad", "--max_epochs=1", "--set=critic_lrr=0.1"),
                       cwd=REPO, capture_output=True, text=True)
  assert bad.returncode == 2 and "critic_lrr" in bad.stderr


def _cli(out_dir, *extra):
  return [sys.executable, "-m", "experiments.train", "--game_name=kuhn_poker", "--seed=5",
          f"--out_dir={out_dir}", "--device=cpu", *extra]


def test_kill_and_resume_keeps_prefix_and_matches_uninterrupted(tmp_path):
  cfg = tmp_path / "tiny.yaml"
  cfg.write_text("".join(f"{k}: {list(v) if isinstance(v, tuple) else v}\n"
                         for k, v in TINY.items()) + "max_epochs: 40\n")
  run = tmp_path / "run"
  p = subprocess.Popen(_cli(run, f"--config={cfg}"), cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  metrics = run / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and len(rundir.read_metrics(str(metrics))) < 5:
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait()
  before = metrics.read_text().splitlines()
  assert 5 <= len(before) < 21, "the run must be killed mid-way"
  subprocess.run(_cli(run, f"--config={cfg}", "--resume"), cwd=REPO, check=True,
                 capture_output=True)
  after = metrics.read_text().splitlines()
  complete = [l for l in before if l.endswith("}")]
  assert after[:len(complete)] == complete  # nothing logged is lost or changed
  epochs = [json.loads(l)["epoch"] for l in after]
  assert epochs == sorted(set(epochs)) and epochs[-1] == 40  # nor duplicated
  ref = tmp_path / "ref"
  subprocess.run(_cli(ref, f"--config={cfg}"), cwd=REPO, check=True, capture_output=True)
  assert rundir.strip_timing(rundir.read_metrics(str(metrics))) == rundir.strip_timing(
      rundir.read_metrics(str(ref / "metrics.jsonl")))


class _Rows(NamedTuple):
  x: torch.Tensor
  sid: Optional[torch.Tensor] = None
  info: Optional[torch.Tensor] = None


def test_replay_state_dict_saves_only_the_filled_rows(tmp_path):
  buf = TensorBuffer(_Rows, 100_000, "reservoir")
  buf.add(_Rows(torch.ones(10, 8)), torch.Generator().manual_seed(0))
  path = tmp_path / "buf.pt"
  torch.save(buf.state_dict(), path)
  assert path.stat().st_size < 20_000  # 10 rows, not the 100,000-row capacity (3.2 MB)
  other = TensorBuffer(_Rows, 100_000, "reservoir")
  other.load_state_dict(torch.load(path, weights_only=True))
  assert len(other) == 10 and torch.equal(other.filled().x, torch.ones(10, 8))
  assert other.filled().sid is None  # fields left None are not stored


def test_policy_draw_current_replays_only_the_current_policy():
  cfg = config_lib.ARMACConfig(**TINY, policy_draw="current")
  a = ARMAC("kuhn_poker", cfg, seed=0)
  for _ in range(3):
    a.step()
  assert a.bank.size > 0  # past policies exist, and none is drawn
  assert (a.draw.slots(a.epoch) == CURRENT).all()


def test_state_regret_targets_are_unit_rms_per_state_means_of_the_replay():
  cfg = config_lib.ARMACConfig(**TINY, regret_fit="rows")
  a = ARMAC("leduc_poker", cfg, seed=0)
  for _ in range(4):
    a.step()
  seen, y, mask = a.state_regret_targets()
  # Brute force: loop over the replay's rows, one information state at a time.
  d = a.regret_fit.replay.filled()
  w = (d.weight * a.weights.sample_weight(d.j)).double()
  sids = sorted(set(d.sid.tolist()))
  assert seen.tolist() == sids and len(sids) > 20
  for k, s in enumerate(sids):
    rows = d.sid == s
    mean = (w[rows, None] * d.target[rows].double()).sum(0) / w[rows].sum()
    legal = a.tree.info_legal[s]
    assert torch.equal(mask[k], legal)
    rms = float(mean[legal].pow(2).mean().sqrt())
    want = mean / rms if rms > 0 else mean * 0
    assert torch.allclose(y[k].double(), want, atol=1e-5), (s, y[k], want)
    if rms > 0:  # regret matching is invariant to the per-state scale
      assert torch.allclose(regret_matching(y[k:k + 1], mask[k:k + 1]).double(),
                            regret_matching(mean[None], legal[None]), atol=1e-5)


class _MeansOfRows:
  """A states fit's training on the per-state means of an unthinned replay of rows (those
  of `rows_fit`, the matching rows fit)."""
  memory = "rows"
  rows_fit = None

  def __init__(self, net, ctx):
    super().__init__(net, ctx)
    self.rows = self.rows_fit(net, ctx)

  def add(self, rows):
    self.rows.add(rows)

  def state_means(self, epoch):
    return self.rows.state_means(epoch)


class StatesOfRows(_MeansOfRows, fits.StatesFit):
  rows_fit = fits.RowsFit


class ActorStatesOfRows(_MeansOfRows, fits.ActorStatesFit):
  rows_fit = fits.ActorRowsFit


@pytest.mark.parametrize("draw", ["balanced", "uniform"])
def test_state_sums_give_the_same_fits_as_the_unthinned_replay(draw):
  """regret_fit / actor_fit = states keep per-state sums; the same learner whose states fits
  read the means of replay rows fits W and the actor to the same means, epoch after epoch,
  while the policy buffer (4 slots) evicts past policies and their sums are folded."""
  cfg = config_lib.ARMACConfig(**{**TINY, "critic_steps": 0, "regret_batch": 1024,
                                  "actor_batch": 1024, "regret_steps": 4, "actor_steps": 4},
                               regret_fit="states", actor_fit="states", policy_draw=draw)
  sums = ARMAC("leduc_poker", cfg, seed=3)
  rows = ARMAC("leduc_poker", cfg, seed=3)
  rows.regret_fit = StatesOfRows(rows.regret, rows.fit_context)  # rows, then per-state means
  rows.actor_fit = ActorStatesOfRows(rows.actor, rows.fit_context)
  for _ in range(12):
    sums.step(), rows.step()
    for fn in ("state_regret_targets", "state_policy_targets"):
      (s1, y1, m1), (s2, y2, m2) = getattr(sums, fn)(), getattr(rows, fn)()
      assert torch.equal(s1, s2) and torch.equal(m1, m2), fn
      assert torch.allclose(y1, y2, atol=1e-5), (fn, (y1 - y2).abs().max())
  assert len(rows.regret_fit.rows.replay) > 0 and len(rows.actor_fit.rows.replay) > 0
  assert len(sums.regret_fit.sums) == len(rows.regret_fit.rows.replay)
  assert sums.bank.pushes > sums.bank.capacity and len(sums.regret_fit.sums.live_epochs) <= 5
  for net in ("regret", "actor"):
    for p, q in zip(getattr(sums, net).parameters(), getattr(rows, net).parameters()):
      assert torch.allclose(p, q, atol=1e-4), net


def test_state_sums_checkpoint_round_trip_and_old_checkpoints_are_named(tmp_path):
  cfg = config_lib.ARMACConfig(**TINY, regret_fit="states", actor_fit="states")
  a = ARMAC("kuhn_poker", cfg, seed=0)
  for _ in range(3):
    a.step()
  path = tmp_path / "c.pt"
  torch.save(a.state_dict(), path)
  b = ARMAC("kuhn_poker", cfg, seed=0)
  d = torch.load(path, weights_only=True)
  b.load_state_dict(d)
  for fn in ("state_regret_targets", "state_policy_targets"):
    for x, y in zip(getattr(a, fn)(), getattr(b, fn)()):
      assert torch.equal(x, y)
  del d["regret_fit"]
  with pytest.raises(ValueError, match="per-state sums for regret_fit=states"):
    ARMAC("kuhn_poker", cfg, seed=0).load_state_dict(d)


def test_regret_fit_states_fits_w_to_the_state_means():
  cfg = config_lib.ARMACConfig(**{**TINY, "regret_steps": 0, "regret_hidden": (64, 64)},
                               regret_fit="states")
  a = ARMAC("kuhn_poker", cfg, seed=0)
  for _ in range(3):
    a.step()
  seen, y, mask = a.state_regret_targets()
  x = a.tree.info_tensors[seen]
  err = lambda: float(((a.regret(x) - y) ** 2 * mask).sum(-1).mean().detach())
  before = err()
  a.regret_fit.cfg = a.cfg.replace(regret_steps=400)
  a.regret_fit.train(a.epoch)
  after = err()
  assert after < 0.01 * before and after < 1e-2, (before, after)


def test_regret_lstsq_solves_ws_last_layer_exactly():
  """regret_lstsq = N: N Adam steps, then W's last layer is the least-squares fit on its
  hidden features. Kuhn's 12 states are fewer than W's 64 hidden units: W interpolates the
  per-state targets. Without the solve (regret_lstsq 0, the same N steps) it does not."""
  errs = {}
  for lstsq in (0, 2):
    cfg = config_lib.ARMACConfig(**{**TINY, "regret_steps": 2, "regret_hidden": (64, 64)},
                                 regret_fit="states", regret_lstsq=lstsq)
    a = ARMAC("kuhn_poker", cfg, seed=0)
    steps, trainer = [], a.regret_fit.trainer
    trainer.steps = lambda n, f, epoch, orig=trainer.steps: steps.append(n) or orig(n, f, epoch)
    for _ in range(3):
      a.step()
    assert steps == [2, 2, 2]
    seen, y, mask = a.state_regret_targets()
    with torch.no_grad():
      errs[lstsq] = float(((a.regret(a.tree.info_tensors[seen]) - y).abs() * mask).max())
  assert errs[2] < 1e-4 < 0.1 < errs[0], errs


def test_fit_last_layer_is_the_masked_least_squares_solution():
  """More rows than hidden units: each output's weights and bias minimise its masked squared
  error (torch.linalg.lstsq on that output's rows, the ridge negligible)."""
  from armac_spiel.networks import MLP, fit_last_layer
  torch.manual_seed(0)
  net = MLP(5, (8,), 3)
  x, y = torch.randn(40, 5), torch.randn(40, 3)
  mask = torch.rand(40, 3) > 0.3
  fit_last_layer(net, x, y, mask, ridge=1e-12)
  with torch.no_grad():
    phi = torch.relu(net[0](x)).double()
    out = net(x).double()
  phi1 = torch.cat([phi, torch.ones(40, 1, dtype=phi.dtype)], 1)
  for a in range(3):
    rows = mask[:, a]
    sol = torch.linalg.lstsq(phi1[rows], y[rows, a].double()[:, None]).solution
    assert torch.allclose(out[rows, a], (phi1[rows] @ sol).squeeze(1), atol=1e-5)


def test_actor_fit_states_targets_are_weighted_mean_policies_and_the_actor_fits_them():
  cfg = config_lib.ARMACConfig(**{**TINY, "actor_steps": 0, "actor_hidden": (64, 64)},
                               actor_fit="states")
  a = ARMAC("leduc_poker", cfg, seed=0)
  a.actor_fit = ActorStatesOfRows(a.actor, a.fit_context)  # keep the rows, for brute force
  for _ in range(4):
    a.step()
  seen, p, mask = a.state_policy_targets()
  d = a.actor_fit.rows.replay.filled()
  w = d.weight.double() * (d.epoch.double() + 1.0)  # linear averaging (default)
  sids = sorted(set(d.sid.tolist()))
  assert seen.tolist() == sids and len(sids) > 10
  for k, s in enumerate(sids):
    rows = d.sid == s
    want = (w[rows, None] * d.probs[rows].double()).sum(0) / w[rows].sum()
    assert torch.allclose(p[k].double(), want, atol=1e-6)
    assert abs(float(p[k].sum()) - 1) < 1e-5 and not p[k][~mask[k]].any()
  x = a.tree.info_tensors[seen]
  kl = lambda: float((p * (p.clamp_min(1e-12).log() - torch.log_softmax(
      a.actor(x).masked_fill(~mask, -1e9), -1))).masked_fill(~mask, 0).sum(-1).mean().detach())
  before = kl()
  a.actor_fit.cfg = a.cfg.replace(actor_steps=300)
  a.actor_fit.train(a.epoch)
  assert kl() < 0.05 * before and kl() < 1e-2, (before, kl())


def test_replays_store_ids_and_gather_the_same_encodings():
  cfg = config_lib.ARMACConfig(**TINY)
  ids = ARMAC("leduc_poker", cfg, seed=0)                      # tree sampler: ids only
  enc = ARMAC("leduc_poker", cfg, seed=0, unique_inputs=False)  # encodings stored
  ids.step(), enc.step()
  assert "history" not in ids.critic_fit.replay.data and "info" not in ids.regret_fit.replay.data
  assert "history" in enc.critic_fit.replay.data and "info" in enc.regret_fit.replay.data
  for name in ("critic_fit", "regret_fit", "actor_fit"):
    a, b = getattr(ids, name).replay, getattr(enc, name).replay
    n = len(a)
    assert n == len(b) > 0
    tab = ids.tables
    da = (tab.node_inputs if name == "critic_fit" else tab.state_inputs)(a.filled())
    db = b.filled()
    valid = getattr(da, "valid", torch.ones(n, dtype=torch.bool))
    for k in ("history", "info", "mask"):
      if getattr(db, k, None) is not None:
        assert torch.equal(getattr(da, k)[valid], getattr(db, k)[valid]), (name, k)
  for p, q in zip(ids.regret.parameters(), enc.regret.parameters()):
    assert torch.allclose(p, q, atol=1e-5)


def test_snapshot_bank_saves_only_filled_slots_and_round_trips(tmp_path):
  nets = [MLP(3, (64,), 2) for _ in range(3)]
  bank = SnapshotBank({"w": nets[0]}, capacity=1000, device="cpu")
  rng = np.random.default_rng(0)
  for e, net in enumerate(nets):
    bank.push({"w": net}, e, rng)
  path = tmp_path / "bank.pt"
  torch.save(bank.state_dict(), path)
  assert path.stat().st_size < 20_000  # 3 snapshots, not 1000 (over 1 MB)
  other = SnapshotBank({"w": nets[0]}, capacity=1000, device="cpu")
  other.load_state_dict(torch.load(path))
  x = torch.randn(3, 5, 3)
  assert other.size == 3 and torch.equal(other.forward("w", torch.arange(3), x),
                                         bank.forward("w", torch.arange(3), x))
  assert other.weights["w"][0].shape[0] == 1000  # room for more pushes


def test_replay_rows_with_other_fields_are_a_clear_error():
  buf = TensorBuffer(_Rows, 10, "reservoir")
  gen = torch.Generator().manual_seed(0)
  buf.add(_Rows(torch.ones(2, 3), sid=torch.zeros(2, dtype=torch.long)), gen)
  with pytest.raises(ValueError, match="fields"):
    buf.add(_Rows(torch.ones(2, 3), info=torch.ones(2, 5)), gen)
  with pytest.raises(TypeError, match="_Rows buffer"):
    buf.add(RegretRows(torch.ones(2, 3), torch.ones(2), torch.zeros(2, dtype=torch.long)),
            gen)


def test_dcfr_regret_discount_matches_the_recursion_on_each_epochs_sums():
  """regret_discount=dcfr: the folded sums follow DCFR's recursion over each epoch's sums
  (read from an undiscounted learner on the same episodes: W untrained in both)."""
  base = dict(TINY, regret_steps=0, regret_fit="states", policy_draw="current")
  plain = ARMAC("leduc_poker", config_lib.ARMACConfig(**base, snapshot_weighting="uniform"),
                seed=3)
  dcfr = ARMAC("leduc_poker", config_lib.ARMACConfig(**base, regret_discount="dcfr",
                                                    dcfr_alpha=1.5, dcfr_beta=0.5), seed=3)
  want = torch.zeros_like(plain.regret_fit.sums.num)
  player = plain.tree.info_player
  prev = want.clone()
  for e in range(8):
    plain.step(), dcfr.step()
    plain.state_regret_targets(), dcfr.state_regret_targets()  # fold epoch e (now past)
    new = plain.regret_fit.sums.num - prev  # epoch e's sums / draws
    prev = plain.regret_fit.sums.num.clone()
    n = e // 2  # epoch e updates player e % 2 for the (n+1)-th time
    if n > 0:
      f = torch.where(want > 0, n ** 1.5 / (n ** 1.5 + 1), n ** 0.5 / (n ** 0.5 + 1))
      want = torch.where((player == e % 2)[:, None], want * f, want)
    want = want + new
    assert new.abs().sum() > 0
    assert torch.allclose(dcfr.regret_fit.sums.num, want, atol=1e-9), e
  with pytest.raises(config_lib.ConfigError, match="regret_discount"):
    config_lib.ARMACConfig(**TINY, regret_discount="dcfr")


def test_polyak_target_network_lags_the_critic_bootstraps_its_targets_and_resumes():
  """critic_target_tau < 1: a target copy of the critic moves by theta' <- (1 - tau) theta'
  + tau theta after each critic step, the trace targets bootstrap from it, and a checkpoint
  carries it (the next epoch is the same after a reload)."""
  cfg = config_lib.ARMACConfig(**TINY, critic_target_tau=0.25)
  a = ARMAC("kuhn_poker", cfg, seed=3)
  assert ARMAC("kuhn_poker", config_lib.ARMACConfig(**TINY), seed=3).critic_fit.target is None
  init = [p.clone() for p in a.critic_fit.target.parameters()]
  a.step()
  live, tgt = list(a.critic.parameters()), list(a.critic_fit.target.parameters())
  assert not any(torch.equal(p, q) for p, q in zip(live, tgt))
  assert not any(torch.equal(p, q) for p, q in zip(init, tgt))
  before = [q.clone() for q in tgt]
  a.critic_fit.polyak()
  for p, q0, q in zip(live, before, tgt):
    assert torch.allclose(q, 0.75 * q0 + 0.25 * p, atol=1e-7)
  # The targets read the target network: the loss changes when only it changes.
  d = a.critic_fit.replay.sample(16, torch.Generator().manual_seed(0))
  with torch.no_grad():
    l1 = float(a.critic_fit.loss(d))
    for q, p in zip(tgt, live):
      q.copy_(p)
    l2 = float(a.critic_fit.loss(d))
  assert l1 != l2
  buf = io.BytesIO()
  torch.save(a.state_dict(), buf)
  buf.seek(0)
  b = ARMAC("kuhn_poker", cfg, seed=3)
  b.load_state_dict(torch.load(buf, weights_only=True))
  a.step()
  b.step()
  for p, q in zip(a.critic_fit.target.parameters(), b.critic_fit.target.parameters()):
    assert torch.equal(p, q)
  for p, q in zip(a.critic.parameters(), b.critic.parameters()):
    assert torch.equal(p, q)
  with pytest.raises(config_lib.ConfigError, match="critic_target_tau"):
    config_lib.ARMACConfig(**TINY, critic_target_tau=0.0)


@pytest.mark.parametrize("regret_fit, actor_fit", [("rows", "rows"), ("states", "states"),
                                                   ("bootstrap", "rows"), ("rows", "states")])
def test_each_fit_checkpoints_plain_data_and_resumes_identically(regret_fit, actor_fit):
  """A learner's checkpoint, each fit's part included, is plain data that loads without
  running code, and the next epoch after a reload is the same bits."""
  extra = {"policy_draw": "current"} if regret_fit == "bootstrap" else {}
  cfg = config_lib.ARMACConfig(**TINY, regret_fit=regret_fit, actor_fit=actor_fit, **extra)
  a = ARMAC("kuhn_poker", cfg, seed=4)
  for _ in range(2):
    a.step()
  state = load_tensor_file(io.BytesIO(tensor_bytes(a.state_dict())), "checkpoint")
  assert state["regret_fit"]["fit"] == regret_fit and state["actor_fit"]["fit"] == actor_fit
  b = ARMAC("kuhn_poker", cfg, seed=4)
  b.load_state_dict(state)
  assert a.step() == b.step()
  for net in ("critic", "regret", "actor"):
    for p, q in zip(getattr(a, net).parameters(), getattr(b, net).parameters()):
      assert torch.equal(p, q), net


def test_node_tables_gathered_on_demand_give_the_same_epochs(monkeypatch):
  """Above records.MATERIALISE_BYTES the per-node encodings are gathered from the tree on
  each read (a tree of millions of nodes): the epochs are bit for bit those of the built
  tables."""
  cfg = config_lib.ARMACConfig(**TINY, sampler="tree")

  def two_epochs():
    a = ARMAC("leduc_poker", cfg, seed=0)
    losses = [a.step() for _ in range(2)]
    return a, losses

  built, losses_built = two_epochs()
  assert isinstance(built.tables.history, torch.Tensor)
  monkeypatch.setattr(records, "MATERIALISE_BYTES", 0)
  gathered, losses_gathered = two_epochs()
  assert isinstance(gathered.tables.history, records.NodeGather)
  assert losses_gathered == losses_built
  assert torch.equal(gathered.average_table(), built.average_table())
