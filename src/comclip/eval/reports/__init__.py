"""What a run's records say: the report (:mod:`~comclip.eval.reports.report`), its legend and
takeaway, tables, the failure diagnosis, word-order and grounding-accuracy checks, and the
comparison of two runs."""
