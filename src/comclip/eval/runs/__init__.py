"""How a measurement runs: :func:`~comclip.eval.runs.evaluate.evaluate` drives the pair runner
(:mod:`~comclip.eval.runs.runner`) or the retrieval runner (:mod:`~comclip.eval.runs.recall`)
over named scorers, writing records as it goes (:mod:`~comclip.eval.runs.store`), across
processes where torchrun starts several (:mod:`~comclip.eval.runs.process_group`)."""
