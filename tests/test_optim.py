"""armac_spiel.optim.Adam: the same steps and state as torch.optim.Adam(fused=True), without
importing torch._dynamo."""

import io
import subprocess
import sys

import pytest
import torch

from armac_spiel.optim import Adam
from tests.conftest import REPO



def _net(seed):
  torch.manual_seed(seed)
  return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))


def _train(net, opt, steps, seed, lr_schedule=None):
  gen = torch.Generator().manual_seed(seed)
  for t in range(steps):
    if lr_schedule is not None:
      opt.param_groups[0]["lr"] = lr_schedule(t)
    x = torch.randn(16, 5, generator=gen)
    y = torch.randn(16, 3, generator=gen)
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(net(x), y).backward()
    opt.step()


def test_steps_are_bit_identical_to_torch_fused_adam():
  ours, ref = _net(0), _net(0)
  sched = lambda t: 3e-3 / (1 + t) ** 0.5  # the learners change lr between steps
  _train(ours, Adam(ours.parameters(), lr=3e-3), 25, 1, sched)
  _train(ref, torch.optim.Adam(ref.parameters(), lr=3e-3, fused=True), 25, 1, sched)
  for a, b in zip(ours.parameters(), ref.parameters()):
    assert torch.equal(a, b)
  # and they moved: a no-op step would fail the test above only if torch's did nothing too
  assert not torch.equal(next(ours.parameters()), next(_net(0).parameters()))


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dicts_are_interchangeable_with_torch_adam(direction):
  """A checkpoint written by either optimizer resumes in the other with identical steps."""
  a, b = _net(2), _net(2)
  make = {"ours": lambda n: Adam(n.parameters(), lr=1e-2),
          "torch": lambda n: torch.optim.Adam(n.parameters(), lr=1e-2, fused=True)}
  src, dst = direction.split("_to_")
  opt_a = make[src](a)
  _train(a, opt_a, 7, 3)
  buf = io.BytesIO()
  torch.save({"net": a.state_dict(), "opt": opt_a.state_dict()}, buf)
  buf.seek(0)
  saved = torch.load(buf, weights_only=True)
  b.load_state_dict(saved["net"])
  opt_b = make[dst](b)
  opt_b.load_state_dict(saved["opt"])
  _train(a, opt_a, 5, 4)
  _train(b, opt_b, 5, 4)
  for x, y in zip(a.parameters(), b.parameters()):
    assert torch.equal(x, y)


def test_load_rejects_a_state_for_other_parameters():
  opt = Adam(_net(0).parameters())
  other = torch.optim.Adam(torch.nn.Linear(5, 7).parameters(), fused=True)
  with pytest.raises(ValueError, match="1 group of 4"):
    opt.load_state_dict(other.state_dict())


def test_a_learner_does_not_import_torch_dynamo():
  """torch.optim.Optimizer imports torch._dynamo (+71 MB resident): building and stepping an
  ARMAC learner must not. Fresh interpreter, since pytest's may already hold it."""
  code = ("import sys\n"
          "from armac_spiel import config as c\n"
          "from armac_spiel.armac import ARMAC\n"
          "cfg = c.ARMACConfig(episodes_per_epoch=16, groups_per_epoch=4, current_groups=1,"
          " critic_steps=2, regret_steps=2, actor_steps=2, critic_batch_episodes=8,"
          " regret_batch=32, actor_batch=32)\n"
          "ARMAC('kuhn_poker', cfg, 0).step()\n"
          "print('dynamo' if 'torch._dynamo' in sys.modules else 'clean')\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().splitlines()[-1] == "clean"
