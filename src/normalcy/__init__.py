"""normalcy: learn what normal looks like, then flag, localise and explain what departs from it."""

import os

# OpenMP threads waiting for work spin (libgomp: 300,000 turns) and take the core a busy thread
# needs: on 2 loaded cores an LSTM step with 2 torch threads took 416 ms (23 ms with the waiters asleep), a
# backbone batch 3.2 s (1.1 s). A short spin keeps the idle speed (6.6 ms against 4.8
# spinning long and 19.7 sleeping at once, OMP_WAIT_POLICY=PASSIVE) and avoids the collapse.
# Read when the OpenMP runtime loads (torch's import), so it holds unless torch was imported
# first; a user's own GOMP_SPINCOUNT or OMP_WAIT_POLICY wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"
