"""normalcy: learn what normal looks like, then flag, localise and explain what departs from it."""

import os

# OpenMP threads that wait for work by spinning (libgomp's default) take the cores a second
# thread needs: on 2 busy cores an LSTM step with 2 torch threads took 416 ms instead of 23 ms,
# a backbone batch 3.2 s instead of 1.1 s. Sleeping waiters cost nothing measurable. Read when
# the OpenMP runtime loads (torch's import), so it holds unless torch was imported first; a
# user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
