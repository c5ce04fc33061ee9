"""Images on their way to a model, below every stage of the pipeline.

- :mod:`comclip.imaging.files`: user files into RGB PIL images (every mode, EXIF rotation, limits).
- :mod:`comclip.imaging.prefetch`: decoding the next examples' files ahead of the model, through
  ``torch.utils.data.DataLoader``.
- :mod:`comclip.imaging.pixels`: a processor's resize, crop and normalise as tensor operations.
- :mod:`comclip.imaging.subimages`: the paper's sub-images (outside a region blacked out).
"""
