"""Studies over many runs: sweeps (one `run_point` for every executor), the
paper-style report, and the paper's published tables."""
