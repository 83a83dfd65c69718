"""Lesson: a source network fine-tuned on a new task (blog post 003) and
transferability by depth (textbook 12.4.1, Yosinski et al. 2014), on digits.

Commands (run as ``python -m digits.<name>``):

* ``transfer``         - 003's example: a CNN trained on digits 0-4 (source),
                         copied into a model for 5-9 with a new head and trained on
                         K labels per class, frozen or fine-tuned, against scratch
* ``transferability``  - 12.4.1's experiment: AnB, BnB, AnB+, BnB+ for every depth n

Library (imported by the commands, never run): ``data`` (the digit sets and
their splits), ``model`` (the CNN and the layer copy).

MNIST cannot be downloaded on the project's machines; scikit-learn's bundled
8x8 digits (``load_digits``, 1797 images) stand in by default, and the real
path stays behind ``--dataset mnist`` (Keras's download, or a local
``mnist.npz``).
"""
