"""One limiter for every CPU thread pool normalcy's detectors use: BLAS and OpenMP (through
threadpoolctl), torch and faiss. On a 2-core machine, oversubscribed or busy-waiting pools
made work 3-70x slower, so long jobs take a `threads` setting and run inside `thread_limit`."""

from __future__ import annotations

import sys

from normalcy.core.errors import DataError


def check_threads(n) -> int | None:
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise DataError(f"threads must be a positive integer or None (all cores), got {n!r}")
    return n


_held: list[int] = []  # the limits of the blocks now open, outermost first


class thread_limit:
    """Cap BLAS/OpenMP, torch and faiss threads for a block; None leaves them as they are.
    torch and faiss are capped only if already imported (importing them costs seconds).

    Inside a block that already holds the same limit, entering is free: threadpoolctl inspects
    every loaded library on each entry, which dominated per-reading streaming (`score_one`)."""

    def __init__(self, n: int | None):
        self.n = check_threads(n)

    def __enter__(self):
        self._noop = self.n is None or (bool(_held) and _held[-1] == self.n)
        if self._noop:
            return self
        from threadpoolctl import threadpool_limits

        torch, faiss = sys.modules.get("torch"), sys.modules.get("faiss")
        # torch, faiss and threadpoolctl can share one OpenMP runtime: read every original
        # setting before changing any, or a later read sees n instead of the original.
        self._torch = torch.get_num_threads() if torch else None
        self._faiss = faiss.omp_get_max_threads() if faiss else None
        self._blas = threadpool_limits(self.n)
        if torch:
            torch.set_num_threads(self.n)
        if faiss:
            faiss.omp_set_num_threads(self.n)
        _held.append(self.n)
        return self

    def __exit__(self, *exc):
        if self._noop:
            return
        _held.pop()
        self._blas.restore_original_limits()
        if self._faiss is not None:
            sys.modules["faiss"].omp_set_num_threads(self._faiss)
        if self._torch is not None:
            sys.modules["torch"].set_num_threads(self._torch)


def hold(n: int | None) -> "thread_limit | None":
    """Enter a `thread_limit` for the rest of the process (a server, a Spark Python worker that
    runs group after group), never leaving it; when the limit already holds, free. Returns the
    limit entered, or None when nothing changed."""
    if n is None or (_held and _held[-1] == check_threads(n)):
        return None
    return thread_limit(n).__enter__()
