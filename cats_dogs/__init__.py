"""The slides' cats-vs-dogs lab: VGG16 bottleneck features, a small top model, then fine-tuning.

Commands (``python -m cats_dogs.NAME``): ``prepare``, ``preview``,
``bottleneck`` (stage 1), ``finetune`` (stage 2) and ``predict``; ``model`` is
the library both stages share.
"""
