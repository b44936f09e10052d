"""Adam without torch.optim.Optimizer.

`torch.optim.Optimizer.add_param_group` is wrapped in `torch._disable_dynamo`, so building
the first optimizer imports torch._dynamo: 68,868 kB more resident memory than the imports
of a training run without it (`python -m experiments.bench_memory`, docs/results.md). This class
holds the same state and calls the same fused kernel (`torch.optim.adam.adam`, the function
torch.optim.Adam(fused=True) steps with), so its steps are bit-identical to
torch.optim.Adam(fused=True) (tests/test_optim.py) and its state dicts are interchangeable
with torch.optim.Adam's.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim.adam import adam as _adam_step

_GROUP_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
                   "maximize": False, "foreach": None, "capturable": False,
                   "differentiable": False, "fused": True, "decoupled_weight_decay": False}


class Adam:
  """Adam (Kingma & Ba 2015) on one parameter group, fused kernel; the subset of
  torch.optim.Adam's interface the learners use: `param_groups[0]["lr"]` may be changed
  between steps, `zero_grad`, `step`, `state_dict`, `load_state_dict`."""

  def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
    self.params = [p for p in params if p.requires_grad]
    if not self.params:
      raise ValueError("Adam got no parameters that require gradients")
    if not lr > 0:
      raise ValueError(f"Adam learning rate must be > 0, got {lr}")
    self.param_groups = [{**_GROUP_DEFAULTS, "lr": float(lr), "betas": tuple(betas),
                          "eps": float(eps), "params": self.params}]
    self._fused = all(p.device.type in ("cpu", "cuda") for p in self.params)
    self.param_groups[0]["fused"] = self._fused or None
    self.state: list[dict] = [{} for _ in self.params]

  def zero_grad(self, set_to_none: bool = True) -> None:
    for p in self.params:
      if set_to_none:
        p.grad = None
      elif p.grad is not None:
        p.grad.zero_()

  def _init_state(self, i: int) -> dict:
    p = self.params[i]
    # torch.optim.Adam keeps `step` as a float32 tensor on the parameter's device when fused.
    self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    return self.state[i]

  @torch.no_grad()
  def step(self) -> None:
    idx = [i for i, p in enumerate(self.params) if p.grad is not None]
    if not idx:
      return
    states = [self.state[i] or self._init_state(i) for i in idx]
    g = self.param_groups[0]
    beta1, beta2 = g["betas"]
    _adam_step([self.params[i] for i in idx], [self.params[i].grad for i in idx],
               [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
               [s["step"] for s in states], foreach=None if self._fused else True,
               fused=self._fused or None, amsgrad=False, beta1=beta1, beta2=beta2,
               lr=g["lr"], weight_decay=0.0, eps=g["eps"], maximize=False)

  def state_dict(self) -> dict:
    """torch.optim.Adam's layout: {"state": {index: {...}}, "param_groups": [{..., "params"}]}."""
    return {"state": {i: dict(s) for i, s in enumerate(self.state) if s},
            "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}]}

  def load_state_dict(self, d: dict) -> None:
    groups = d["param_groups"]
    if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
      raise ValueError(f"optimizer state has {len(groups)} group(s) of "
                       f"{[len(g['params']) for g in groups]} parameters; this Adam has 1 "
                       f"group of {len(self.params)}")
    g = groups[0]
    self.param_groups[0].update(lr=float(g["lr"]), betas=tuple(g["betas"]), eps=float(g["eps"]))
    self.state = [{} for _ in self.params]
    for pos, i in enumerate(g["params"]):
      s = d["state"].get(i, d["state"].get(str(i)))
      if not s:
        continue
      p = self.params[pos]
      for key in ("exp_avg", "exp_avg_sq"):
        if tuple(s[key].shape) != tuple(p.shape):
          raise ValueError(f"optimizer state '{key}' of parameter {pos} has shape "
                           f"{tuple(s[key].shape)}, the parameter {tuple(p.shape)}")
      self.state[pos] = {
          "step": torch.as_tensor(s["step"], dtype=torch.float32).to(p.device).reshape(()),
          "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
          "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}
