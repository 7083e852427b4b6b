"""LPC Studio's terminal UI: a thin consumer of lpc_engine's events.

`LpcApp` (lpc_tui.app) takes the training function in its constructor, so
tests can inject a scripted event stream; `lpc-tui` launches it."""
