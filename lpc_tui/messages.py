"""Messages from the training thread to the app."""

from __future__ import annotations

from textual.message import Message

from lpc_engine.events import Event


class EngineEvent(Message):
    """One engine event, posted from the worker thread (post_message is
    thread-safe); handled on the app's event loop."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
