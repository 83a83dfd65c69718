"""Left-ventricle segmentation by a transfer-learning GAN (textbook 12.5.2) on cardiac MRI.

``data`` reads checked image / mask pairs and splits them by patient, ``roi``
places the 128 x 128 region of interest without looking at the mask being
segmented, ``networks`` builds the segmentation networks (U-Net from scratch,
TLBSN with a pretrained encoder), ``discriminator`` the multi-scale
discriminator, ``losses`` the equations 23-24, ``metrics`` Dice, Jaccard,
sensitivity and precision, ``report`` the figures and tables; ``train``,
``evaluate``, ``predict`` and ``table3`` are the commands.
"""
