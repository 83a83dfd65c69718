"""The textbook's 12.5.1 (flower recognition by deep transfer, Table 2) and the chapter's flower17 exercise.

Commands (``python -m flowers.NAME``): ``prepare`` (the split, then the
offline views), ``train`` (12.5.1's stages), ``baselines`` (Table 2's SVM and
CNN rows), ``predict`` and ``flower17`` (the exercise). Library modules, one
per step of 12.5.1 that ``train`` goes through: ``data`` (1), ``bottlenecks``,
``head`` and ``finetune`` (2: the cache, stage ②, stage ③), ``report`` (3-4);
``table2`` holds the book's Table 2.
"""
