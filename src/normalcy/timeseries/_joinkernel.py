"""The compiled nearest-subsequence search behind `normalcy.timeseries.join.nearest` (numba,
cached on disk after the first compilation, about a second).

For consecutive queries the dot products with every memory subsequence follow from the
previous query's in O(1) each (STOMP's recurrence, Zhu et al. 2016), so a query costs O(memory)
instead of O(memory x window); every ANCHOR queries they are computed afresh so rounding does
not build up. Those dot products only choose candidates: every candidate within a tolerance of
the smallest approximate distance (one far above the products' rounding) then gets its distance
computed directly, as a sum of squared differences in a fixed order. The result is the exact
nearest distance, the same bits whichever queries were computed together, so streaming equals
batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

ANCHOR = 512  # queries between fresh dot products
TOL = 1e-9  # relative tolerance of the candidates, far above the products' rounding (~1e-13)
FLAT = 1e-8  # a subsequence whose standard deviation is below this (relative to its level) is constant


@njit(cache=True, nogil=True)
def _stats(s, start, m):
    """Mean and standard deviation of s[start:start+m], summed in order."""
    total = 0.0
    for k in range(m):
        total += s[start + k]
    mean = total / m
    var = 0.0
    for k in range(m):
        dev = s[start + k] - mean
        var += dev * dev
    return mean, math.sqrt(var / m)


@njit(cache=True, nogil=True)
def _flat(mean, std):
    return std <= FLAT * (abs(mean) + 1.0)


@njit(cache=True, nogil=True)
def _direct(s, qs, j, m, normalize, q_mean, q_std):
    """The distance between the subsequences of s starting at qs and j, summed in order."""
    total = 0.0
    if not normalize:
        for k in range(m):
            dev = s[j + k] - s[qs + k]
            total += dev * dev
        return math.sqrt(total)
    r_mean, r_std = _stats(s, j, m)
    q_flat, r_flat = _flat(q_mean, q_std), _flat(r_mean, r_std)
    for k in range(m):
        a = 0.0 if q_flat else (s[qs + k] - q_mean) / q_std
        b = 0.0 if r_flat else (s[j + k] - r_mean) / r_std
        dev = b - a
        total += dev * dev
    return math.sqrt(total)


@njit(cache=True, nogil=True)
def _window_stats(c, center, m):
    """Per subsequence of c (approximate, for choosing candidates): sum of squares, mean,
    1 / standard deviation (0 when flat) and the correlation's condition 1 + mean^2 / var."""
    n = len(c) - m + 1
    sq, mu, inv_sd, cond = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    total, total_sq = 0.0, 0.0
    for j in range(n):
        if j % ANCHOR == 0:  # afresh now and then, so the running sums do not drift
            total, total_sq = 0.0, 0.0
            for k in range(j, j + m - 1):
                total += c[k]
                total_sq += c[k] * c[k]
        else:
            total -= c[j - 1]
            total_sq -= c[j - 1] * c[j - 1]
        total += c[j + m - 1]
        total_sq += c[j + m - 1] * c[j + m - 1]
        sq[j] = total_sq
        mean = total / m
        var = max(total_sq / m - mean * mean, 0.0)
        sd = math.sqrt(var)
        mu[j] = mean
        if not _flat(mean + center, sd):
            inv_sd[j] = 1.0 / sd
            cond[j] = 1.0 + mean * mean / var
    return sq, mu, inv_sd, cond


@njit(cache=True, nogil=True)
def _direct_products(c, qs, lo, hi, m, qt):
    for j in range(lo, hi + 1):
        total = 0.0
        for k in range(m):
            total += c[qs + k] * c[j + k]
        qt[j] = total


@njit(cache=True, nogil=True, fastmath=True)
def _approx(qt, j, q_sq, q_mu, q_inv, sq, mu, inv_sd, m, normalize):
    """The approximate squared distance to candidate j (only ever compared with a tolerance)."""
    if not normalize:
        return q_sq + sq[j] - 2.0 * qt[j]
    if q_inv == 0.0 or inv_sd[j] == 0.0:
        return 0.0 if q_inv == inv_sd[j] else float(m)
    rho = (qt[j] - m * q_mu * mu[j]) * q_inv * inv_sd[j] / m
    return 2.0 * m * (1.0 - min(max(rho, -1.0), 1.0))


@njit(cache=True, nogil=True)
def nearest_kernel(s, c, center, ends, first, last, m, normalize):
    """For each query subsequence of s ending at ends[i], the distance to its nearest
    subsequence starting in [first[i], last[i]] (inf if none); c is s - center, for the
    approximate products. Queries come in order of their ends."""
    n_windows = len(s) - m + 1
    out = np.full(len(ends), np.inf)
    old, new = np.zeros(n_windows), np.zeros(n_windows)
    sq, mu, inv_sd, cond = _window_stats(c, center, m)
    sq_max = sq.max() if n_windows > 0 else 0.0
    kept, kept_d2 = np.zeros(n_windows, dtype=np.int64), np.zeros(n_windows)
    prev_end, prev_lo, prev_hi, since = -2, 0, -1, ANCHOR
    for i in range(len(ends)):
        e, lo, hi = ends[i], first[i], last[i]
        if hi < lo:
            continue
        qs = e - m + 1
        # dot products of the query with the candidates [lo, hi], from the previous query's
        if e == prev_end + 1 and lo >= prev_lo and hi <= prev_hi + 1 and since < ANCHOR:
            since += 1
            start = lo
            if lo - 1 < prev_lo or lo == 0:
                _direct_products(c, qs, lo, lo, m, new)
                start = lo + 1
            a, b = c[qs - 1], c[qs + m - 1]
            for j in range(start, hi + 1):
                new[j] = old[j - 1] - a * c[j - 1] + b * c[j + m - 1]
        else:
            since = 0
            _direct_products(c, qs, lo, hi, m, new)
        old, new = new, old
        prev_end, prev_lo, prev_hi = e, lo, hi
        q_sq, q_mu, q_inv, q_cond = sq[qs], mu[qs], inv_sd[qs], cond[qs]
        q_mean, q_std = _stats(s, qs, m) if normalize else (0.0, 0.0)
        found = np.inf
        if not normalize:
            # one pass: every candidate within the tolerance of the smallest approximate squared
            # distance so far is kept, and those still within it of the final smallest are
            # measured exactly (the tolerance uses the largest sum of squares of all subsequences)
            slack = TOL * max(q_sq, sq_max) + 1e-300
            best, count = np.inf, 0
            for j in range(lo, hi + 1):
                d2 = q_sq + sq[j] - 2.0 * old[j]
                if d2 <= best + slack:
                    kept[count] = j
                    kept_d2[count] = d2
                    count += 1
                    best = min(best, d2)
            for k in range(count):
                if kept_d2[k] <= best + slack:
                    found = min(found, _direct(s, qs, kept[k], m, normalize, q_mean, q_std))
            out[i] = found
            continue
        # z-normalised: the smallest approximate squared distance, a tolerance far above its
        # rounding, then the exact distances of the candidates within it
        best, scale = np.inf, 1.0
        for j in range(lo, hi + 1):
            best = min(best, _approx(old, j, q_sq, q_mu, q_inv, sq, mu, inv_sd, m, normalize))
            scale = max(scale, cond[j])
        cut = best + TOL * 2.0 * m * q_cond * scale + 1e-300
        for j in range(lo, hi + 1):
            if _approx(old, j, q_sq, q_mu, q_inv, sq, mu, inv_sd, m, normalize) <= cut:
                found = min(found, _direct(s, qs, j, m, normalize, q_mean, q_std))
        out[i] = found
    return out
