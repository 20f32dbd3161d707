"""bigstep's benchmarks: the asv suite (bench_*.py) and peer comparisons (compare_*.py)."""
