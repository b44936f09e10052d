"""Policy export and import in the `armac-spiel/policy-v1` JSON format.

    {"game": "<game string>", "format": "armac-spiel/policy-v1",
     "policy": {"<information_state_string>": {"<action id>": probability, ...}, ...}}

Every information state is present, only legal actions are listed, and each state's
probabilities sum to 1 within 1e-6. Floats are written with `repr` precision, so
export -> import round-trips bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import torch

from armac_spiel import evaluation
from armac_spiel.atomic import atomic_write_text
from games import infostate_table, load_game

FORMAT = "armac-spiel/policy-v1"
SUM_TOL = 1e-6


class PolicyFileError(ValueError):
  """A policy file that does not follow armac-spiel/policy-v1; the message says where."""


def policy_to_json(game_string: str, probs: torch.Tensor) -> dict:
  table = infostate_table(game_string)
  arr = probs.detach().to("cpu", torch.float64).numpy()
  legal = table.legal_mask.numpy()
  return {
      "game": game_string,
      "format": FORMAT,
      "policy": {key: {str(int(a)): float(arr[i, a]) for a in np.flatnonzero(legal[i])}
                 for i, key in enumerate(table.keys)},
  }


def export_policy(path: str, game_string: str, probs: torch.Tensor) -> None:
  """Writes the table atomically (temp file + rename)."""
  atomic_write_text(path, json.dumps(policy_to_json(game_string, probs)))


def policy_from_json(obj, source: str = "<policy>") -> tuple[str, torch.Tensor]:
  """Validates a policy-v1 object; returns (game string, (S, A) float64 table)."""
  if not isinstance(obj, dict):
    raise PolicyFileError(f"{source}: top level must be a JSON object")
  missing = {"game", "format", "policy"} - set(obj)
  if missing:
    raise PolicyFileError(f"{source}: missing field(s) {sorted(missing)}")
  if obj["format"] != FORMAT:
    raise PolicyFileError(f"{source}: format is {obj['format']!r}, expected {FORMAT!r}")
  game_string = obj["game"]
  try:
    load_game(game_string)
  except ValueError as e:
    raise PolicyFileError(f"{source}: field 'game': {e}") from e
  table = infostate_table(game_string)
  pol = obj["policy"]
  if not isinstance(pol, dict):
    raise PolicyFileError(f"{source}: field 'policy' must be an object")
  unknown = set(pol) - set(table.index)
  if unknown:
    raise PolicyFileError(f"{source}: {len(unknown)} unknown information state(s) for "
                          f"{game_string!r}, e.g. {sorted(unknown)[0]!r}")
  missing_keys = [k for k in table.keys if k not in pol]
  if missing_keys:
    raise PolicyFileError(f"{source}: {len(missing_keys)} information state(s) missing, "
                          f"e.g. {missing_keys[0]!r}")
  probs = torch.zeros(table.legal_mask.shape, dtype=torch.float64)
  legal = table.legal_mask
  for i, key in enumerate(table.keys):
    entry = pol[key]
    if not isinstance(entry, dict):
      raise PolicyFileError(f"{source}: state {key!r}: must map action ids to probabilities")
    total = 0.0
    for a_str, p in entry.items():
      try:
        a = int(a_str)
      except ValueError:
        raise PolicyFileError(f"{source}: state {key!r}: action {a_str!r} is not an integer id")
      if not 0 <= a < legal.shape[1] or not legal[i, a]:
        raise PolicyFileError(f"{source}: state {key!r}: action {a} is not legal")
      if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or p < 0:
        raise PolicyFileError(f"{source}: state {key!r}: action {a}: probability {p!r} is not "
                              "a finite number >= 0")
      probs[i, a] = p
      total += p
    if abs(total - 1.0) > SUM_TOL:
      raise PolicyFileError(f"{source}: state {key!r}: probabilities sum to {total!r}, not 1 "
                            f"(tolerance {SUM_TOL})")
  return game_string, probs


def import_policy(path: str) -> tuple[str, torch.Tensor]:
  if not os.path.exists(path):
    raise PolicyFileError(f"{path}: no such policy file")
  try:
    with open(path) as f:
      obj = json.load(f)
  except json.JSONDecodeError as e:
    raise PolicyFileError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
  return policy_from_json(obj, path)


# Policy specs: one string names a policy table for CLIs (--policy, --a, --b).
SPEC_FORMS = ("uniform", "always_call", "always_raise", "cfr_plus:N", "RUN_DIR",
              "RUN_DIR:mixed", "FILE.json")
_RULE_GAMES = ("kuhn_poker", "leduc_poker")
_KUHN_KEY = re.compile(r"^(\d+)([pb]*)$")


def _base_name(game_string: str) -> str:
  return re.sub(r"\(.*", "", game_string)


def rule_table(game_string: str, rule: str) -> torch.Tensor:
  """(S, A) table of a fixed poker rule: `always_call` checks or calls and never folds or
  bets; `always_raise` bets or raises where it may, and calls otherwise.

  Kuhn (action 0 pass, 1 bet; facing a bet pass folds and bet calls): always_call passes
  until someone has bet, then bets (calls); always_raise always bets.
  Leduc (0 fold, 1 call/check, 2 raise/bet): always_call plays 1; always_raise plays 2 where
  legal, else 1.
  """
  if rule not in ("always_call", "always_raise"):
    raise ValueError(f"rule must be always_call or always_raise, got {rule!r}")
  base = _base_name(game_string)
  if base not in _RULE_GAMES:
    raise ValueError(f"{rule} is defined for {', '.join(_RULE_GAMES)}, not {game_string!r}")
  table = infostate_table(game_string)
  legal = table.legal_mask
  choice = torch.zeros(len(table), dtype=torch.long)
  if base == "kuhn_poker":
    if rule == "always_raise":
      choice.fill_(1)
    else:
      facing = torch.tensor(["b" in _KUHN_KEY.match(k).group(2) for k in table.keys])
      choice = facing.long()
  else:
    choice.fill_(1)
    if rule == "always_raise":
      choice = torch.where(legal[:, 2], 2, 1)
  probs = torch.zeros(legal.shape, dtype=torch.float64)
  probs[torch.arange(len(table)), choice] = 1.0
  return probs


def _same_game(a: str, b: str) -> bool:
  return a == b or str(load_game(a).game) == str(load_game(b).game)


def resolve_policy(game_string: str, spec: str, flag: str = "--policy") -> torch.Tensor:
  """(S, A) float64 table named by a policy spec; errors name `flag` and the allowed forms.

  uniform | always_call | always_raise | cfr_plus:N (N iterations of OpenSpiel's CFR+) |
  RUN_DIR (its policy.json) | RUN_DIR:mixed (its policy_mixed.json) | a policy-v1 file.
  """
  if not isinstance(spec, str) or not spec:
    raise ValueError(f"{flag} is empty; allowed: {', '.join(SPEC_FORMS)}")
  if spec == "uniform":
    return evaluation.uniform_table(game_string)
  if spec in ("always_call", "always_raise"):
    try:
      return rule_table(game_string, spec)
    except ValueError as e:
      raise ValueError(f"{flag}={spec}: {e}") from e
  if spec.startswith("cfr_plus:"):
    n = spec.split(":", 1)[1]
    if not n.isdigit() or int(n) < 1:
      raise ValueError(f"{flag}=cfr_plus:N needs a positive integer N, got {spec!r}")
    return evaluation.cfr_plus_table(game_string, int(n))
  path = spec
  if spec.endswith(":mixed") and os.path.isdir(spec[:-len(":mixed")]):
    path = os.path.join(spec[:-len(":mixed")], "policy_mixed.json")
  elif os.path.isdir(spec):
    path = os.path.join(spec, "policy.json")
  if not os.path.exists(path):
    where = (f"run directory {os.path.dirname(path)} has no {os.path.basename(path)}"
             if path != spec else f"no such file or run directory {spec!r}")
    raise ValueError(f"{flag}: {where}; allowed: {', '.join(SPEC_FORMS)}")
  try:
    file_game, probs = import_policy(path)
  except PolicyFileError as e:
    raise ValueError(f"{flag}: {e}") from e
  if not _same_game(file_game, game_string):
    raise ValueError(f"{flag}: {path} is a policy for {file_game!r}, but --game_name="
                     f"{game_string!r}")
  return probs
