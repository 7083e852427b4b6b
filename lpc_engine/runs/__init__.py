"""The run directory: its writer (store.py), atomic writes, checkpoint files,
the one reader (reader.py) and `load_run`."""
