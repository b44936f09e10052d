"""The compiled tree's node kinds."""

CHANCE, DECISION, TERMINAL = 0, 1, 2
