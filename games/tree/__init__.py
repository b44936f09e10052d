"""Compiled game trees for small games: tensor sampling and exact policy evaluation.

- `compile`: `compile_tree(game_string)` walks the OpenSpiel tree once into a `GameTree`
  of tensors; `tree_fits` says whether a game is small enough.
- `exact`: `Exact` evaluates a tabular policy (S, A) exactly, level by level, in float64
  (expected returns, best responses, NashConv, CFR-BR's counterfactual values).
- `sampler`: `TreeSampler` plays B episodes in lockstep with tensor gathers only.
"""

from games.tree.arrays import CHANCE, DECISION, TERMINAL
from games.tree.compile import (DEFAULT_MAX_NODES, GameTree, compile_tree, count_nodes,
                                knuth_estimate, tree_fits)
from games.tree.exact import BestResponseCFV, Exact, exact_q
from games.tree.sampler import TreeSampler
