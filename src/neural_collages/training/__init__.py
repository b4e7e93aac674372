"""Training of the Neural Collage codec: the loop, checkpoints, corpora, the crop sampler, prior refits.

Nothing on an inference path imports this package (model files are read by
:mod:`neural_collages.models.model_files`).
"""
