"""The README's "Write your own Learner" example runs as printed and is vanilla CFR."""

import io
import os
import re

import pyspiel
import pytest
import torch
from open_spiel.python.algorithms import cfr as os_cfr
from open_spiel.python.algorithms import exploitability as os_expl

from armac_spiel import evaluation

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _example_namespace() -> dict:
  """Executes the README's Learner example (the first python block after its heading)."""
  pytest.importorskip("armac_spiel.runs")  # the registry the example imports
  text = open(README).read()
  section = text.split("## Write your own Learner", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  ns = {"__name__": "readme_example"}
  exec(compile(code, "README.md:my_rm", "exec"), ns)  # pylint: disable=exec-used
  return ns


def test_readme_learner_is_vanilla_cfr():
  my_rm = _example_namespace()["MyRM"]("kuhn_poker")
  game = pyspiel.load_game("kuhn_poker")
  ref = os_cfr._CFRSolver(game, regret_matching_plus=False,  # pylint: disable=protected-access
                          alternating_updates=False, linear_averaging=False)
  for _ in range(60):
    my_rm.step()
    ref.evaluate_and_update_policy()
  ours = evaluation.exploitability("kuhn_poker", my_rm.average_table())
  theirs = os_expl.exploitability(game, ref.average_policy())
  assert my_rm.epoch == my_rm.episodes == 60
  assert ours == pytest.approx(theirs, abs=1e-9)
  assert ours < evaluation.exploitability("kuhn_poker", evaluation.uniform_table("kuhn_poker"))


def test_readme_learner_state_dict_is_plain_data_and_resumes():
  cls = _example_namespace()["MyRM"]
  a = cls("leduc_poker")
  for _ in range(3):
    a.step()
  buf = io.BytesIO()
  torch.save(a.state_dict(), buf)
  buf.seek(0)
  b = cls("leduc_poker")
  b.load_state_dict(torch.load(buf, weights_only=True))
  a.step()
  b.step()
  assert (a.epoch, a.episodes) == (b.epoch, b.episodes) == (4, 4)
  assert torch.equal(a.average_table(), b.average_table())
