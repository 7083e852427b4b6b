"""Several processes training one run: the process group, DDP, the global
batch norm, and the cores a run may use."""
