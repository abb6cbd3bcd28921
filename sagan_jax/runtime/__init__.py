"""Process plumbing around a run: what a training or sampling process needs that is
not about GANs.

* `workdir` — the run's folders and ``config.json``; `workdir_lock` — one trainer per
  workdir;
* `stop_signals` — SIGTERM / Ctrl-C: finish the step, save, stop;
* `console` — CLI logging and one-line flag and config-file errors; `progress` — the
  progress line's rate and ETA;
* `metric_writer` — the `MetricWriter` interface; `tensorboard_writer`,
  `scalar_file_writers` (CSV, JSONL), `wandb_writer` its backends; `writer_factory` —
  ``config.logging.writers`` → one writer (only the chief writes);
* `compilation` — compile with a line before and after; `compilation_cache` — JAX's
  persistent cache;
* `distributed` — multi-host start-up that fails fast.

It imports nothing of the GAN floors (models, data, train, eval): `sagan_jax.runs`
combines the two.
"""
