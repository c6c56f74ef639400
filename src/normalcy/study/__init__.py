"""Studies: measurements that chose a rule of the library (benchmarks, not tests).

`thresholds`: how false-alarm-rate thresholds behave with few held-out normal items, on the
score distributions of every reference corpus (docs/thresholds.md).
"""
