"""Configure pane: the architecture, the training recipe and the gamma
schedule, with a live preview of gamma over the epochs (log axis).

Every edit is checked at once (form.FormModel); an invalid field is marked
red with its reason under it, and Start is refused until the form is valid.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from lpc_engine.config import RunConfig
from lpc_engine.presets import PRESETS
from lpc_engine.training.schedules import epoch_reaching_max, gamma_at

from lpc_tui.form import FORM_FIELDS, FormModel
from lpc_tui.widgets.plots import Series, SeriesPlot


class ConfigurePane(Vertical):
    """The form on the left; the preset, the gamma preview and Start on the right."""

    def __init__(self, model: FormModel, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.cfg, self.errors = model.check()
        self.last_valid = self.cfg  # the side panel keeps showing it while a field is invalid

    def compose(self) -> ComposeResult:
        shown = self.model.shown(self.cfg)
        with Horizontal():
            with VerticalScroll(id="form"):
                for f in FORM_FIELDS:
                    with Horizontal(classes="row"):
                        yield Label(f.label, classes="field-label")
                        if f.choices:
                            field = Select([(text, value) for value, text in f.choices], value=shown[f.name],
                                           allow_blank=False, compact=True, id=f"field-{f.name}")
                        else:
                            field = Input(shown[f.name], compact=True, id=f"field-{f.name}")
                        field.tooltip = f.help
                        yield field
                    yield Label("", classes="field-error", id=f"error-{f.name}")
                with Horizontal(classes="row"):
                    yield Label("run name", classes="field-label")
                    yield Input("", placeholder="automatic", compact=True, id="run-name")
            with Vertical(id="side"):
                yield Static(id="preset-info")
                yield SeriesPlot("gamma over epochs (log)", log_y=True, id="gamma-preview")
                yield Static(id="gamma-info")
                yield Static(id="form-problem")
                yield Button("Start  (s)", id="start", variant="success", compact=True)

    def on_mount(self) -> None:
        self.refresh_view()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._edited(event.input.id, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._edited(event.select.id, str(event.value))

    def _edited(self, widget_id: str | None, value: str) -> None:
        if not widget_id or not widget_id.startswith("field-"):
            return
        name = widget_id.removeprefix("field-")
        if value == self.model.shown(self.cfg)[name]:
            return  # our own update of an untouched field, or no change
        self.model.edit(name, value)
        self.cfg, self.errors = self.model.check()
        self.last_valid = self.cfg or self.last_valid
        self.refresh_view()

    @property
    def run_name(self) -> str:
        return self.query_one("#run-name", Input).value.strip()

    def refresh_view(self) -> None:
        """Errors inline, untouched fields from the layers, the side panel."""
        shown = self.model.shown(self.cfg)
        for f in FORM_FIELDS:
            reason = self.errors.get(f.name, "")
            error = self.query_one(f"#error-{f.name}", Label)
            error.update(f"↳ {reason}" if reason else "")
            error.display = bool(reason)
            widget = self.query_one(f"#field-{f.name}")
            widget.set_class(bool(reason), "invalid")
            resolved = self.cfg or self.model.resolved  # the layers' values, while a field is wrong too
            if resolved is not None and f.name not in self.model.edits and widget.value != shown[f.name]:
                widget.value = shown[f.name]
        problem = self.errors.get("", "")
        self.query_one("#form-problem", Static).update(f"[red]{problem}[/]" if problem else "")
        self.query_one("#start", Button).disabled = self.cfg is None
        self._side(self.cfg or self.last_valid, valid=self.cfg is not None)

    def _side(self, cfg: RunConfig | None, valid: bool) -> None:
        preset = PRESETS.get(cfg.model.preset) if cfg is not None else None
        info = self.query_one("#preset-info", Static)
        info.update(f"[b]{preset.name}[/b]: {preset.description}" if preset else "")
        plot = self.query_one("#gamma-preview", SeriesPlot)
        note = self.query_one("#gamma-info", Static)
        if cfg is None:
            return
        xs = list(range(1, cfg.epochs + 1))
        plot.show([Series("gamma", xs, [gamma_at(e, cfg.gamma, cfg.epochs) for e in xs], color="magenta")],
                  x_max=cfg.epochs)
        top = epoch_reaching_max(cfg.gamma, cfg.epochs)
        penalised = preset is not None and preset.penalty
        reach = (f"γ reaches {cfg.gamma.gamma_max:g} at epoch {top}" if top
                 else f"γ stays below {cfg.gamma.gamma_max:g} for {cfg.epochs} epochs")
        governed = cfg.gamma.gamma_cap != "none" and penalised
        cap = (f"\n[yellow]governor on[/]: each epoch γ ≤ {cfg.gamma.gamma_cap_factor:g}·mean‖W_k‖²"
               " (the run may use less than this curve)" if governed else "")
        note.update(reach + ("" if penalised else "  [dim](this preset has no penalty)[/]") + cap
                    + ("" if valid else "\n[red]fix the fields marked in red to start[/]"))
