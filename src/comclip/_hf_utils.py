"""Keeping ``transformers`` quiet while comclip loads or writes models."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def quiet_transformers():
    """Silence transformers' info/warning logs and progress bars for the duration.

    Loading prints weight-loading progress bars and a notice that the torchvision image
    processor backend is missing (the PIL one is used instead, with equal results); neither
    helps a user reading comclip's output.
    """
    from comclip._optional import hide_broken

    hide_broken()  # an installed torchvision that cannot load would break transformers' import
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars_were_enabled:
            hf_logging.enable_progress_bar()
