"""Deep domain adaptation (textbook eq. 21-22): ``adaptation.DomainAdapter``, a scikit-learn classifier.

The estimator is imported on first use, so that the light modules of this
package (data, plots, measures) do not load TensorFlow with it.
"""

__all__ = ["DomainAdapter"]


def __getattr__(name):
    if name == "DomainAdapter":
        from adaptation.adapter import DomainAdapter

        return DomainAdapter
    raise AttributeError(f"module 'adaptation' has no attribute {name!r}")
