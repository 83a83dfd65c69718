"""Maximum mean discrepancy and the MMD-based adaptation solvers TCA, JDA, BDA,
with the shallow instance-weighting and feature-alignment baselines beside them.

Textbook section 12.3 as a library:

* `mmd.kernels`   - linear, RBF (median heuristic), polynomial, multi-RBF kernels
* `mmd.distance`  - `mmd2` (biased / unbiased / linear-time) and `mmd_test`;
                    CLI `python -m mmd.distance`
* `mmd.solvers`   - `TCA`, `JDA`, `BDA` scikit-learn estimators (eq. 10-20),
                    exact or Nystrom kernels
* `mmd.eigensolvers` - eq. 20: exact (the k wanted pairs of one dense symmetric
                    problem, LAPACK on a CPU) and warm-started iterative
* `mmd.weighting` - `KMM`, `KLIEP`: instance weights of eq. 2 (12.2.3) for a
                    wrapped classifier
* `mmd.boosting`  - `TrAdaBoost`, with a few labelled target samples
* `mmd.alignment` - `SA`, `CORAL`: closed-form feature alignment (eq. 1)
* `mmd.scoring`   - label-free GridSearchCV scorers (prediction entropy,
                    importance-weighted validation, soft neighbourhood density)
* `mmd.data`      - Office-Caltech10 SURF loading and the published protocol
* `mmd.benchmark` - CLI `python -m mmd.benchmark`, the 12-task table
* `mmd.solver_timing` - CLI, the eq. 20 solvers timed on one fit's problems
* `mmd.scaling`   - CLI, time and memory of a fit against n (synthetic data)

The names below are imported lazily so that `python -m mmd.<cli>` can set up
TensorFlow's logging before TensorFlow is first imported.
"""
_EXPORTS = {
    "TCA": "solvers", "JDA": "solvers", "BDA": "solvers",
    "mmd2": "distance", "mmd_test": "distance", "MMDTestResult": "distance",
    "make_kernel": "kernels", "linear_kernel": "kernels", "rbf_kernel": "kernels",
    "polynomial_kernel": "kernels", "multi_rbf_kernel": "kernels",
    "median_heuristic": "kernels",
    "KMM": "weighting", "KLIEP": "weighting", "TrAdaBoost": "boosting",
    "SA": "alignment", "CORAL": "alignment",
    "prediction_entropy_scorer": "scoring", "importance_weighted_scorer": "scoring",
    "soft_neighbourhood_density_scorer": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mmd' has no attribute {name!r}")
