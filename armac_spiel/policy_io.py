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

import numpy as np
import torch

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
