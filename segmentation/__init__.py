"""Left-ventricle segmentation by a transfer-learning GAN (textbook 12.5.2) on cardiac MRI.

Commands (``python -m segmentation.NAME``): ``train``, ``evaluate``,
``predict`` and ``table3``. The rest is their library, in the book's order:
(1) ``data`` reads checked image / mask pairs, splits them by patient and
makes the training batches, ``roi`` places the 128 x 128 region of interest
without looking at the mask being segmented; (2) ``networks`` builds the
segmentation networks (U-Net from scratch, TLBSN with a pretrained encoder),
``discriminator`` the multi-scale discriminator, ``finetuning`` the
layer-wise release of the encoder (figure 11); (3) ``losses`` states eq. 23-24
and ``gan`` takes one training step on them; (4) ``metrics`` scores Dice,
Jaccard, sensitivity and precision, ``report`` draws the figures and tables.
"""
