"""Scheduler: invariants A-D, meta-regret arithmetic and LRU, utilities, config, training."""

import math

import pytest
import torch

from armac_spiel import config as config_lib
import games
from armac_spiel.scheduler import (MetaRegretConfig, SchedulerConfig, SchedulerNet,
                                   SchedulerSuiteConfig, SchedulerTrainer, StateKeyer,
                                   UtilityComputer, advantage_utilities, compute_utilities,
                                   discounted_returns, discrete_logits_to_lambda, from_dict,
                                   gumbel_tau, mix_policies, mixing_stats)
from armac_spiel.scheduler.config import StateKeyingConfig, UtilityConfig
from armac_spiel.scheduler.meta_regret import MetaRegretManager

BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA"))]
NOWARM = SchedulerConfig(scheduler_warmup_iters=0)


def _policies(b, a, device, seed=0):
  g = torch.Generator().manual_seed(seed)
  pi_rm = torch.rand(b, a, generator=g).to(device)
  pi_avg = torch.rand(b, a, generator=g).to(device)
  mask = torch.rand(b, a, generator=g) > 0.4
  mask[:, 0] = True
  pi_rm[3] = 0.0  # all-zero row -> uniform over legal
  return pi_rm, pi_avg, mask.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["continuous", "discrete"])
@pytest.mark.parametrize("training", [True, False])
def test_invariants_a_b_mix_shape_sum_device(device, mode, training):
  torch.manual_seed(0)
  net = SchedulerNet(7, NOWARM, mode).to(device)
  x = torch.randn(16, 7, device=device)
  out = net(x, training=training)
  for v in out.values():
    if isinstance(v, torch.Tensor):
      assert v.device.type == device
  pi_rm, pi_avg, mask = _policies(16, 4, device)
  pi, lam = mix_policies(pi_rm, pi_avg, out, mask, BINS)
  assert pi.shape == (16, 4) and lam.shape == (16, 1)
  assert pi.device.type == device and lam.device.type == device
  assert torch.allclose(pi.sum(-1), torch.ones(16, device=device), atol=1e-6)
  assert (pi[~mask] == 0).all() and (pi >= 0).all()
  if mode == "discrete":
    assert out["logits"].shape == (16, 5) and out["lambda_idx"].dtype == torch.long
    assert torch.allclose(lam.squeeze(1), torch.tensor(BINS, device=device)[out["lambda_idx"]])
  else:
    eps = NOWARM.lam_clamp_eps
    assert ((lam >= eps) & (lam <= 1 - eps)).all()
  # Row 3 had pi_rm = 0: its rm part is uniform over legal actions.
  legal3 = mask[3].float() / mask[3].sum()
  p_avg3 = pi_avg[3] * mask[3] / (pi_avg[3] * mask[3]).sum()
  l3 = lam[3, 0]
  assert torch.allclose(pi[3], l3 * legal3 + (1 - l3) * p_avg3, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_invariant_b_logits_to_lambda_keeps_device_and_grad(device):
  logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 10.0], [10.0, 0, 0, 0, 0]], device=device,
                        requires_grad=True)
  for hard in (False, True):
    lam = discrete_logits_to_lambda(logits, list(BINS), hard=hard, tau=0.5)
    assert lam.device.type == device and lam.shape == (2, 1)
    assert lam[0].item() == pytest.approx(1.0, abs=1e-3)
    assert lam[1].item() == pytest.approx(0.0, abs=1e-3)
  soft = discrete_logits_to_lambda(torch.zeros(1, 5, device=device), BINS)
  assert soft.item() == pytest.approx(0.5)
  lam.sum().backward()
  assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_invariant_c_grads_in_training():
  x = torch.randn(8, 6)
  net = SchedulerNet(6, NOWARM, "discrete")
  out = net(x, training=True)
  assert out["logits"].requires_grad
  cnet = SchedulerNet(6, NOWARM, "continuous")
  lam = cnet(x, training=True)["lambda"]
  assert lam.requires_grad
  lam.sum().backward()
  assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cnet.parameters())


def test_invariant_d_bounded_under_adversarial_utilities():
  cfg = MetaRegretConfig(max_states=64, lru_evict_batch=8)
  m = MetaRegretManager(cfg)
  g = torch.Generator().manual_seed(1)
  for i in range(3000):
    keys = torch.randint(0, 100, (32,), generator=g)
    kind = i % 4
    if kind == 0:
      u = torch.full((32, 5), 1e30 * (-1) ** i)
    elif kind == 1:
      u = torch.tensor([[float("inf"), -float("inf"), float("nan"), 1e6, -1e6]]).repeat(32, 1)
    elif kind == 2:
      u = torch.randn(32, 5, generator=g) * 1e6
    else:
      u = torch.tensor([1e6, -1e6, 1e6, -1e6, 1e6]).repeat(32, 1) * (-1) ** (i // 4)
    m.update(keys, u)
  assert torch.isfinite(m.regrets).all() and torch.isfinite(m.util_ema).all()
  assert m.regrets.min() >= cfg.regret_min and m.regrets.max() <= cfg.regret_clip
  assert m.util_ema.abs().max() <= cfg.util_clip
  p = m.desired_probs(torch.arange(100))
  assert torch.allclose(p.sum(-1), torch.ones(100)) and (p >= 0).all()
  assert len(m) <= cfg.max_states and m.evictions > 0
  # A fixed adversary on few keys drives regrets and EMAs into the clips, not past them.
  # (Under consistent utilities RM+ stops the best arm's regret growing, so a small
  # regret_clip is needed to reach it: first update gives r_0 = 2.5 - 0 > 1.)
  m = MetaRegretManager(MetaRegretConfig(decay=0.5, max_states=4, lru_evict_batch=1,
                                         regret_clip=1.0))
  u = torch.tensor([1e6, -1e30, 0, 0, 0]).repeat(3, 1)
  for _ in range(1000):
    m.update(torch.tensor([0, 1, 1]), u)
  assert m.regrets[:2, 0].tolist() == [1.0, 1.0] and m.regrets.min() == 0.0
  for _ in range(1000):
    m.update(torch.tensor([0, 1, 1]), -u)
  assert torch.isfinite(m.regrets).all()
  assert m.regrets.max() <= 1.0 and m.regrets.min() == 0.0
  assert m.util_ema[:2, 0].tolist() == [-5.0, -5.0] and m.util_ema[:2, 1].tolist() == [5.0, 5.0]


def test_lru_eviction_under_load():
  m = MetaRegretManager(MetaRegretConfig(max_states=10, lru_evict_batch=3))
  u = torch.zeros(1, 5)
  for k in range(10):
    m.update([f"s{k}"], u)
  assert len(m) == 10 and m.evictions == 0
  m.update(["s0"], u)                       # s0 is now most recent; s1, s2, s3 are oldest
  m.update(["new"], u)
  assert m.evictions == 3 and len(m) == 8
  assert all(f"s{k}" not in m for k in (1, 2, 3)) and "s0" in m and "new" in m
  for k in range(200):
    m.update([f"x{k}", f"x{k}"], torch.ones(2, 5))
    assert len(m) <= 10
  assert m.keys()[-1] == "x199" and "x198" in m and "x150" not in m
  assert m.evictions == 3 + 3 * math.ceil((200 - 2) / 3)
  # A batch with more distinct keys than max_states is processed in chunks.
  m.update(list(range(25)), torch.ones(25, 5))
  assert len(m) <= 10 and 24 in m


def test_repeated_full_lookups_keep_the_lru_order_and_rows():
  """The shortcut for a lookup of every tracked key in the last order gives the rows and the
  LRU order of the dict walk, through inserts, partial lookups, evictions and a reload."""
  cfg = MetaRegretConfig(max_states=6, lru_evict_batch=2)
  fast, slow = MetaRegretManager(cfg), MetaRegretManager(cfg)
  gen = torch.Generator().manual_seed(0)
  hits = 0
  for step in range(60):
    n = int(torch.randint(1, 7, (1,), generator=gen))
    if step % 3 == 0 and len(fast):
      keys = fast.keys()                    # every tracked key, in LRU order
    else:
      keys = torch.randint(0, 9, (n,), generator=gen).tolist()
    insert = step % 4 != 1
    for _ in range(2 if step % 3 == 0 else 1):  # the second full lookup takes the shortcut
      hit = fast._same is not None and fast._same[0] == list(dict.fromkeys(keys))
      hits += hit
      rows_f = fast._rows_for(list(dict.fromkeys(keys)), insert=insert)
      slow._same = None                       # the reference always walks the dict
      rows_s = slow._rows_for(list(dict.fromkeys(keys)), insert=insert)
      assert rows_f.tolist() == rows_s.tolist() and fast.keys() == slow.keys()
    if step == 30:
      fast.load_state_dict(slow.state_dict())
  assert fast.evictions == slow.evictions > 0 and hits >= 10


def test_ema_regret_clip_arithmetic():
  cfg = MetaRegretConfig(K=3, decay=0.5, util_clip=5.0, regret_clip=10.0, max_states=4)
  m = MetaRegretManager(cfg)
  # u clipped to [-5, 5]: (5, 1, -5); ema = 0.5 * u = (2.5, 0.5, -2.5); sigma uniform.
  m.update(["a"], torch.tensor([[100.0, 1.0, -7.0]]))
  row = m._rows["a"]
  assert torch.allclose(m.util_ema[row], torch.tensor([2.5, 0.5, -2.5]))
  assert torch.allclose(m.regrets[row], torch.tensor([2.5 - 1 / 6, 0.5 - 1 / 6, 0.0]))
  # Duplicates are averaged: (4, 0, 0) and (0, 0, 0) -> (2, 0, 0); ema = (2.25, 0.25, -1.25).
  # sigma from regrets (7/3, 1/3, 0) = (7/8, 1/8, 0); sigma.ema = 63/32 + 1/32 = 2.
  m.update(["a", "a"], torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
  assert torch.allclose(m.util_ema[row], torch.tensor([2.25, 0.25, -1.25]))
  want = torch.tensor([7 / 3 + 2.25 - 2.0, 0.0, 0.0])
  assert torch.allclose(m.regrets[row], want, atol=1e-6)
  assert torch.allclose(m.desired_probs(["a"])[0], torch.tensor([1.0, 0.0, 0.0]))
  assert torch.allclose(m.desired_probs(["unseen"])[0], torch.full((3,), 1 / 3))
  # sigma is now pure on arm 0, so its regret stays (RM+), and the rest stay clipped at 0.
  for _ in range(200):
    m.update(["a"], torch.tensor([[5.0, -5.0, -5.0]]))
  assert m.regrets[row].tolist() == pytest.approx(want.tolist())
  assert m.util_ema[row].tolist() == [5.0, -5.0, -5.0]
  low = MetaRegretManager(MetaRegretConfig(K=3, decay=0.5, regret_clip=2.0, max_states=4))
  low.update(["a"], torch.tensor([[100.0, 1.0, -7.0]]))
  assert low.regrets[0].tolist() == pytest.approx([2.0, 0.5 - 1 / 6, 0.0])


def test_annealing_schedule():
  cfg = SchedulerConfig(gumbel_tau_start=1.0, gumbel_tau_end=0.1, gumbel_anneal_iters=100)
  assert gumbel_tau(cfg, 0) == pytest.approx(1.0)
  assert gumbel_tau(cfg, 50) == pytest.approx(math.sqrt(0.1))  # geometric midpoint
  assert gumbel_tau(cfg, 100) == pytest.approx(0.1)
  assert gumbel_tau(cfg, 10_000) == pytest.approx(0.1)
  net = SchedulerNet(3, cfg)
  net.iteration.fill_(25)
  assert net.tau() == pytest.approx(0.1 ** 0.25)


def test_warmup_freezes_lambda():
  cfg = SchedulerConfig(scheduler_warmup_iters=10, init_lambda=0.3)
  x = torch.randn(5, 4)
  cont = SchedulerNet(4, cfg, "continuous")
  assert torch.equal(cont(x, iteration=9)["lambda"], torch.full((5, 1), 0.3))
  assert not torch.equal(cont(x, iteration=10)["lambda"], torch.full((5, 1), 0.3))
  disc = SchedulerNet(4, cfg, "discrete")
  out = disc(x, training=True, iteration=0)
  assert out["lambda_idx"].tolist() == [1] * 5  # bin 0.25 is nearest to 0.3
  assert discrete_logits_to_lambda(out["logits"], BINS).flatten().tolist() == pytest.approx(
      [0.25] * 5, abs=1e-6)
  # The trainer does not move the net during warm-up.
  suite = SchedulerSuiteConfig(scheduler=cfg)
  tr = SchedulerTrainer(suite, 4)
  before = [p.clone() for p in tr.net.parameters()]
  stats = tr.step(x, keys=torch.arange(5), utilities=torch.randn(5, 5), iteration=3)
  assert stats["scheduler.frozen"] == 1.0 and stats["scheduler.lambda_mean"] == 0.25
  assert all(torch.equal(a, b) for a, b in zip(before, tr.net.parameters()))
  tr.step(x, keys=torch.arange(5), utilities=torch.randn(5, 5), iteration=10)
  assert any(not torch.equal(a, b) for a, b in zip(before, tr.net.parameters()))


def test_immediate_utility_baseline():
  uc = UtilityComputer(UtilityConfig(utility_type="immediate", gamma=0.5,
                                     baseline_window=3, min_samples=2))
  rewards = torch.tensor([[1.0, 2.0, 4.0], [0.0, 0.0, 8.0]])
  g = discounted_returns(rewards, 0.5)
  assert g.tolist() == [3.0, 2.0]
  u = uc.immediate(torch.tensor([0, 4]), 5, rewards=rewards)  # baseline 0 (< min_samples)
  assert u.tolist() == [[3, 0, 0, 0, 0], [0, 0, 0, 0, 2]]
  u = uc.immediate(torch.tensor([2]), 5, returns=torch.tensor([4.0]))  # baseline 2.5
  assert u.tolist() == [[0, 0, 1.5, 0, 0]]
  u = uc.immediate(torch.tensor([1]), 5, returns=torch.tensor([0.0]),
                   bin_probs=torch.tensor([[0.2, 0.5, 0.1, 0.1, 0.1]]))
  # ring buffer now (3, 2, 4) -> baseline 3; importance weight 1 / 0.5.
  assert u.tolist() == [[0, -6.0, 0, 0, 0]]
  assert uc.buffer.tolist() == [0.0, 2.0, 4.0] and uc.count == 3


def test_advantage_and_hybrid_utilities():
  q = torch.tensor([[1.0, 3.0, 100.0]])
  mask = torch.tensor([[True, True, False]])
  pi_rm = torch.tensor([[0.0, 1.0, 0.0]])
  pi_avg = torch.tensor([[0.5, 0.5, 0.0]])
  # Baseline pi_rm: V = 3; A = (-2, 0); E_rm = 0, E_avg = -1; u_k = -(1 - bin_k).
  u = advantage_utilities(q, pi_rm, pi_avg, mask, BINS)
  assert u.tolist() == [[-1.0, -0.75, -0.5, -0.25, 0.0]]
  # Baseline pi_mix at lambda 0.5: V = 0.25 * 1 + 0.75 * 3 = 2.5.
  u = advantage_utilities(q, pi_rm, pi_avg, mask, BINS, lam=torch.tensor([[0.5]]))
  assert u[0].tolist() == pytest.approx([-0.5, -0.25, 0.0, 0.25, 0.5])
  cfg = UtilityConfig(utility_type="hybrid", min_samples=0)
  uc = UtilityComputer(cfg)
  h = compute_utilities(cfg, uc, lambda_bins=BINS, q=q, pi_rm=pi_rm, pi_avg=pi_avg,
                        legal_mask=mask, chosen_idx=torch.tensor([4]),
                        returns=torch.tensor([2.0]))
  assert h[0].tolist() == pytest.approx([-0.5, -0.375, -0.25, -0.125, 1.0])
  with pytest.raises(ValueError, match="chosen_idx"):
    compute_utilities(cfg, uc, lambda_bins=BINS, q=q, pi_rm=pi_rm, pi_avg=pi_avg,
                      legal_mask=mask)


def test_kl_gradient_reaches_every_parameter():
  torch.manual_seed(0)
  tr = SchedulerTrainer(SchedulerSuiteConfig(scheduler=NOWARM), 6)
  desired = torch.softmax(torch.randn(32, 5), -1)
  loss, parts = tr.loss(torch.randn(32, 6), desired, regularize=False)
  assert parts["fit"] > 0
  loss.backward()
  for name, p in tr.net.named_parameters():
    assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_config_errors_and_round_trip():
  with pytest.raises(ValueError, match=r"meta_regret\.max_state\b"):
    from_dict({"meta_regret": {"max_state": 10}})
  with pytest.raises(ValueError, match=r"scheduler\.regularization\.beta_l3"):
    from_dict({"scheduler": {"regularization": {"beta_l3": 1}}})
  with pytest.raises(config_lib.ConfigError, match="best_response\\|br_critic"):
    from_dict({"utility_computation": {"utility_type": "td"}})
  with pytest.raises(config_lib.ConfigError, match=r"strategy.*best_response\|br_critic"):
    from_dict({"utility_computation": {"strategy": "exact"}})
  with pytest.raises(config_lib.ConfigError, match=r"set one of the two"):
    from_dict({"utility_computation": {"strategy": "br_critic", "utility_type": "immediate"}})
  with pytest.raises(config_lib.ConfigError, match=r"state_keying\.level.*0\|1\|2\|3"):
    from_dict({"state_keying": {"level": 4}})
  with pytest.raises(config_lib.ConfigError, match=r"meta_regret\.averaging"):
    from_dict({"meta_regret": {"averaging": "exp"}})
  with pytest.raises(ValueError, match=r"meta_regret\.K"):
    from_dict({"meta_regret": {"K": 4}})
  with pytest.raises(ValueError, match=r"scheduler\.k_bins.*\[0, 1\]"):
    from_dict({"scheduler": {"k_bins": [0, 1.5]}})
  d = {"use_scheduler": True, "scheduler": {"scheduler_lr": "1e-3", "hidden": [8]},
       "policy_mixer": {"discrete": False}, "state_keying": {"level": 0}}
  c = from_dict(d)
  assert c.scheduler.scheduler_lr == 1e-3 and c.mode == "continuous"
  assert c.meta_regret.max_states == "auto" and c.meta_regret.decay == 0.995
  assert from_dict(c.to_dict()) == c
  assert from_dict(SchedulerSuiteConfig().to_dict()) == SchedulerSuiteConfig()
  assert c.with_mode("off").mode == "off" and c.with_mode("discrete").mode == "discrete"


def test_learns_many_leduc_states():
  table = games.infostate_table("leduc_poker")
  g = torch.Generator().manual_seed(0)
  pick = torch.randperm(len(table), generator=g)[:500]
  strings = [table.keys[i] for i in pick.tolist()]
  # Level 1 keys: leduc has only a few public betting situations, so only a few keys.
  lvl1 = StateKeyer(StateKeyingConfig(level=1), "leduc_poker", scale="reachable")
  k1 = lvl1.ids_from_infostates(strings)
  m1 = MetaRegretManager()
  m1.update(k1, torch.zeros(500, 5))
  assert m1.stats()["states_tracked"] == len(set(k1.tolist())) >= 10
  # Level 2 keys (k-means over the encodings) track many states.
  lvl2 = StateKeyer(StateKeyingConfig(level=2, n_clusters=80, cluster_file="/nonexistent/x"),
                    seed=0)
  k2 = lvl2.ids(embeddings=table.tensors[pick])
  m = MetaRegretManager()
  assert m.stats()["bin_entropy"] == 0.0 and m.stats()["states_tracked"] == 0
  # Noisy utilities favour high lambda on even cluster ids and low lambda on odd ones.
  bins = torch.tensor(BINS)
  even = (k2 % 2 == 0)[:, None]
  for _ in range(30):
    u = torch.where(even, bins - 0.5, 0.5 - bins) + 0.3 * torch.randn(500, 5, generator=g)
    m.update(k2, u)
  assert m.stats()["states_tracked"] >= 50
  assert m.stats()["bin_entropy"] < math.log(5) - 0.5
  expected = m.desired_probs(k2) @ bins
  assert expected[even[:, 0]].min() > 0.6 and expected[~even[:, 0]].max() < 0.4


def test_trainer_distills_and_checkpoints(tmp_path):
  torch.manual_seed(0)
  cfg = from_dict({"scheduler": {"scheduler_warmup_iters": 0, "scheduler_lr": 1e-2},
                   "state_keying": {"level": 1}})
  tr = SchedulerTrainer(cfg, games.load_game("leduc_poker").info_state_size, "leduc_poker")
  table = games.infostate_table("leduc_poker")
  x, strings = table.tensors[:200], table.keys[:200]
  u = torch.tensor(BINS).repeat(200, 1)  # lambda = 1 is best everywhere
  for it in range(1, 61):
    stats = tr.step(x, utilities=u, iteration=it, infostate_strings=strings)
  for k in ("scheduler.states_tracked", "scheduler.bin_entropy", "scheduler.lambda_mean",
            "scheduler.evictions"):
    assert k in stats
  assert stats["scheduler.lambda_mean"] == 1.0 and stats["scheduler.bin_entropy"] < 0.1
  torch.save(tr.state_dict(), tmp_path / "ck.pt")
  tr2 = SchedulerTrainer(cfg, x.shape[1], "leduc_poker")
  tr2.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True))
  assert tr2.iteration == 60 and len(tr2.manager) == len(tr.manager)
  assert torch.equal(tr2.net(x, training=False)["logits"], tr.net(x, training=False)["logits"])
  a = tr.step(x, utilities=u, iteration=61, infostate_strings=strings)
  b = tr2.step(x, utilities=u, iteration=61, infostate_strings=strings)
  assert a["scheduler.loss"] == pytest.approx(b["scheduler.loss"], rel=1e-6)
  # Continuous mode regresses lambda towards the desired expected lambda.
  tc = SchedulerTrainer(cfg.with_mode("continuous"), x.shape[1], "leduc_poker")
  first = tc.step(x, utilities=u, iteration=1, infostate_strings=strings)
  for it in range(2, 80):
    last = tc.step(x, utilities=u, iteration=it, infostate_strings=strings)
  assert last["scheduler.lambda_mean"] > first["scheduler.lambda_mean"] + 0.2


def test_the_scheduler_net_starts_from_the_run_seed():
  """Its initial weights come from the seed, not from torch's global generator (which
  torch seeds at random in each process): one seed, one net; another seed, another."""
  cfg = from_dict({"state_keying": {"level": 1}})
  size = games.load_game("leduc_poker").info_state_size
  weights = []
  for seed, global_seed in ((3, 0), (3, 1), (4, 0)):
    torch.manual_seed(global_seed)
    tr = SchedulerTrainer(cfg, size, "leduc_poker", seed=seed)
    weights.append(torch.cat([p.detach().flatten() for p in tr.net.parameters()]))
  assert torch.equal(weights[0], weights[1])
  assert not torch.equal(weights[0], weights[2])


def test_cluster_file_atomic_persist(tmp_path):
  path = str(tmp_path / "sub" / "clusters.pt")
  cfg = StateKeyingConfig(level=2, n_clusters=4, cluster_file=path)
  keyer = StateKeyer(cfg)
  x = torch.cat([torch.zeros(5, 3), torch.ones(5, 3) * 10, torch.randn(5, 3) - 20,
                 torch.full((5, 3), 30.0)])
  assert keyer.save_clusters() is None  # not fitted yet
  ids = keyer.ids(embeddings=x)
  assert len(set(ids.tolist())) == 4
  assert keyer.save_clusters() == path
  assert [p.name for p in (tmp_path / "sub").iterdir()] == ["clusters.pt"]
  again = StateKeyer(cfg)
  assert torch.equal(again.cluster_ids(x, update=False), ids)
