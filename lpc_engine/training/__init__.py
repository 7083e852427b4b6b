"""Training: `train()` (a generator of events), the session it drives, the
epoch and its steps, schedules, checkpoints, alerts, measurements during
training, headless runs and `BackgroundRun`."""
