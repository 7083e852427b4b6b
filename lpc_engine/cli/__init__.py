"""`lpc`: the Typer app and its commands, rendering with rich and plotext,
the process launcher and workers, the sweep executors. It imports the core;
nothing in the core imports it."""
