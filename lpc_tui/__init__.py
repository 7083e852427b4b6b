"""LPC Studio's terminal UI: a thin consumer of lpc_engine's events (the app
itself arrives with the TUI issue)."""
