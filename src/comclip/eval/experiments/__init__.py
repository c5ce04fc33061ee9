"""Several runs as one experiment: suites of datasets and methods from a TOML file
(:mod:`~comclip.eval.experiments.suite`, :mod:`~comclip.eval.experiments.suite_run`) and
ablation grids (:mod:`~comclip.eval.experiments.ablation`)."""
