"""Data pruning: `scores` (difficulty scores, the SCORES registry), `select` (which examples
to keep, the SELECTORS registry: hardest / easiest / CCS, random, herding, k-center),
`dynamic` (the kept set redrawn during training) and `experiment` (whole runs)."""
