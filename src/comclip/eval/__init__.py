"""Evaluation, split by job:

- :mod:`comclip.eval.benchmarks`: what is measured (datasets, kinds of example, metrics);
- :mod:`comclip.eval.runs`: how a run goes (evaluate, the pair and retrieval runners, the record
  store, several processes);
- :mod:`comclip.eval.reports`: what a run's records say (report, tables, diagnosis, comparison);
- :mod:`comclip.eval.experiments`: suites and ablation grids.

The former flat names (``comclip.eval.runner``, ``comclip.eval.datasets``...) still import, with
a DeprecationWarning, until the next release (see :mod:`comclip._moved`).
"""
