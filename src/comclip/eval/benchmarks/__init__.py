"""What is measured: the datasets (:mod:`~comclip.eval.benchmarks.datasets`), the kinds of
example and the rule that scores each (:mod:`~comclip.eval.benchmarks.kinds`), and the metric
functions over precomputed scores (:mod:`~comclip.eval.benchmarks.metrics`)."""
