"""Exploitability where exact evaluation ends: lower bounds by sampled play.

`estimate(game, policy, method, budget, seed)` (armac_spiel/approx/estimate.py) is the
one entry point; `learned_br` learns a best response from sampled episodes, `lbr` is the
local best response of poker; both are measured on fresh episodes with a 95% interval.
"""

from armac_spiel.approx.budget import Budget, Estimate
from armac_spiel.approx.estimate import (METHODS, RUN_METHODS, check_method, estimate,
                                         resolve_method, uniform_policy)
from armac_spiel.approx.learned_br import LearnedBRConfig
from armac_spiel.approx.lbr import NotPokerError
