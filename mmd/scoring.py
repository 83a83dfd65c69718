"""Model selection without target labels: scorers for GridSearchCV.

Cross-validation on the source says how well a model fits the source, not
the target; the target labels that would say it are exactly what domain
adaptation does not have.  The three criteria here score a fitted model
from the unlabelled target samples (and, for one of them, the held-out
source fold), higher is better, as scikit-learn's `scoring=` expects:

* `prediction_entropy_scorer`: minus the mean entropy of the predicted
  class probabilities on the target (entropy minimisation, Grandvalet &
  Bengio 2005, used as a validation criterion by Morerio et al. 2018): a
  model that is sure of its target labels scores higher.  Blind to
  confidently wrong predictions.
* `importance_weighted_scorer`: importance-weighted validation (Sugiyama,
  Krauledat, Mueller, JMLR 2007): the accuracy on the held-out source fold
  with each sample weighted by w(x) = p_t(x) / p_s(x) (KLIEP by default,
  or KMM), an unbiased estimate of the target accuracy under a covariate
  shift.
* `soft_neighbourhood_density_scorer`: soft neighbourhood density (Saito,
  Kim, Teterwak, Sclaroff, Darrell, Saenko, ICCV 2021): the entropy of each
  target sample's softmax-weighted similarity to the other target samples
  (temperature 0.05), averaged; high when target predictions form dense
  neighbourhoods.

Each is a callable `scorer(estimator, X, y=None)`.  The target samples come
from the scorer's own `Xt`, or else from the estimator's `Xt` parameter,
so that

    GridSearchCV(KMM(Xt=Xt), grid, scoring=importance_weighted_scorer()).fit(Xs, ys)

scores every candidate on the same target.  Class probabilities come from
the estimator's `predict_proba` (KMM, KLIEP) or, for TCA / JDA / BDA / SA /
CORAL, from their `classifier_` on `transform(Xt)` when that classifier has
one (e.g. `classifier=LogisticRegression()`); 1-NN has none.

`python -m mmd.scoring --data-dir D` measures the criteria on
Office-Caltech10: the k of SA that each picks, and that k's target
accuracy beside the best k (known only from the target labels).
"""
from __future__ import annotations

import numpy as np

from common.selection import row_entropy

from .validation import InputError, check_positive


def target_samples(scorer_Xt, estimator):
    """The target samples a scorer works on: its own, or the estimator's
    `Xt` parameter."""
    if scorer_Xt is not None:
        return scorer_Xt
    Xt = estimator.get_params().get("Xt") if hasattr(estimator, "get_params") else None
    if Xt is None:
        raise InputError(f"the scorer needs the target samples: give them to the scorer (Xt=) or "
                         f"to {type(estimator).__name__} as its Xt parameter")
    return Xt


def target_probabilities(estimator, Xt) -> np.ndarray:
    """(nt, C) class probabilities of the fitted estimator on the target."""
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(Xt))
    clf = getattr(estimator, "classifier_", None)
    if clf is not None and hasattr(clf, "predict_proba") and hasattr(estimator, "transform"):
        return np.asarray(clf.predict_proba(estimator.transform(Xt)))
    raise InputError(f"{type(estimator).__name__} gives no class probabilities; pass a classifier "
                     "that has predict_proba (e.g. classifier=LogisticRegression())")


class _TargetScorer:
    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self):
        return {}


class PredictionEntropy(_TargetScorer):
    """-mean_j H(p(.|x_j^t)); see the module docstring."""

    def __init__(self, Xt=None):
        self.Xt = Xt

    def __call__(self, estimator, X=None, y=None):
        P = target_probabilities(estimator, target_samples(self.Xt, estimator))
        return -float(np.mean(row_entropy(P)))


class ImportanceWeightedAccuracy(_TargetScorer):
    """sum_i w(x_i) [f(x_i) = y_i] / sum_i w(x_i) over the held-out source
    fold (X, y); see the module docstring.

    `weighting`: an (unfitted) KMM or KLIEP, whose settings estimate the
    weights of the fold's samples towards the target at every call, or a
    KLIEP already fitted on the whole source, whose `density_ratio` is
    evaluated at the fold's samples (one estimate for all folds), or any
    callable X -> w(X).
    """

    def __init__(self, weighting=None, Xt=None):
        self.weighting = weighting
        self.Xt = Xt

    def _params(self):
        return {"weighting": self.weighting}

    def weights(self, estimator, X):
        weighting = self.weighting
        if weighting is None:
            from .weighting import KLIEP
            weighting = KLIEP(random_state=0)
        if getattr(weighting, "alpha_", None) is not None:   # a fitted KLIEP
            return weighting.density_ratio(X)
        if hasattr(weighting, "weights_for"):
            return weighting.weights_for(X, target_samples(self.Xt, estimator))
        if callable(weighting):
            return np.asarray(weighting(X), dtype=float)
        raise InputError(f"weighting must be KMM, KLIEP or a callable, got {weighting!r}")

    def __call__(self, estimator, X, y=None):
        if y is None:
            raise InputError("importance-weighted validation scores the labelled source fold: "
                             "y is needed")
        w = self.weights(estimator, X)
        if w.shape != (len(X),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError("the importance weights must be one finite, non-negative number per "
                             "sample, not all zero")
        correct = np.asarray(estimator.predict(X)) == np.asarray(y).ravel()
        return float(w @ correct / w.sum())


class SoftNeighbourhoodDensity(_TargetScorer):
    """SND (Saito et al. 2021): with f_j the L2-normalised class
    probabilities of target sample j (or its `transform` features),
    S_jk = f_j . f_k, P_jk = softmax_k(S_jk / temperature) over k != j,
    SND = mean_j H(P_j.); see the module docstring."""

    def __init__(self, Xt=None, temperature=0.05, features="proba"):
        self.Xt = Xt
        self.temperature = temperature
        self.features = features

    def _params(self):
        return {"temperature": self.temperature, "features": self.features}

    def __call__(self, estimator, X=None, y=None):
        tau = check_positive(self.temperature, "temperature")
        Xt = target_samples(self.Xt, estimator)
        if self.features == "proba":
            F = target_probabilities(estimator, Xt)
        elif self.features == "transform":
            F = np.asarray(estimator.transform(Xt), dtype=float)
        else:
            raise InputError(f"features must be 'proba' or 'transform', got {self.features!r}")
        return soft_neighbourhood_density(F, tau)


def soft_neighbourhood_density(F, temperature: float = 0.05) -> float:
    """SND of the rows of F (n, p), n >= 2; the formula of
    `SoftNeighbourhoodDensity`."""
    F = np.asarray(F, dtype=float)
    if F.ndim != 2 or len(F) < 2:
        raise InputError("soft neighbourhood density needs at least 2 target samples")
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    F = F / np.where(norms > 0, norms, 1.0)
    logits = F @ F.T / temperature
    np.fill_diagonal(logits, -np.inf)                 # a sample is not its own neighbour
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    P /= P.sum(axis=1, keepdims=True)
    return float(np.mean(row_entropy(P)))


def prediction_entropy_scorer(Xt=None):
    """Scorer: minus the mean entropy of the target class probabilities."""
    return PredictionEntropy(Xt=Xt)


def importance_weighted_scorer(weighting=None, Xt=None):
    """Scorer: importance-weighted accuracy of the held-out source fold
    (`ImportanceWeightedAccuracy`; KLIEP weights unless `weighting` says)."""
    return ImportanceWeightedAccuracy(weighting=weighting, Xt=Xt)


def soft_neighbourhood_density_scorer(Xt=None, temperature=0.05, features="proba"):
    """Scorer: soft neighbourhood density of the target predictions."""
    return SoftNeighbourhoodDensity(Xt=Xt, temperature=temperature, features=features)


__all__ = ["prediction_entropy_scorer", "importance_weighted_scorer",
           "soft_neighbourhood_density_scorer", "soft_neighbourhood_density",
           "target_probabilities", "PredictionEntropy", "ImportanceWeightedAccuracy",
           "SoftNeighbourhoodDensity"]


# --------------------------------------------------------------------------
# python -m mmd.scoring: the scorers choosing SA's k on Office-Caltech10
# --------------------------------------------------------------------------

def choose_k(Xs, ys, Xt, yt, grid, cv=3):
    """Target accuracy (%) of SA + LogisticRegression(max_iter=1000) for
    each k of `grid`, and the k each criterion picks by GridSearchCV on the
    source (cv folds, target as the Xt parameter; yt only scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    from .alignment import SA

    def model(**kw):
        return SA(classifier=LogisticRegression(max_iter=1000), Xt=Xt, **kw)

    scoring = {"entropy": prediction_entropy_scorer(), "iwv": importance_weighted_scorer(),
               "snd": soft_neighbourhood_density_scorer(), "source_cv": "accuracy"}
    search = GridSearchCV(model(), {"n_components": list(grid)}, scoring=scoring, refit=False,
                          cv=cv).fit(Xs, ys)
    accuracy = {k: 100.0 * model(n_components=k).fit(Xs, ys).score(Xt, yt) for k in grid}
    picks = {name: list(grid)[int(np.argmax(search.cv_results_[f"mean_test_{name}"]))]
             for name in scoring}
    return accuracy, picks


def main(argv=None) -> int:
    """`python -m mmd.scoring`: which k of subspace alignment each
    label-free criterion picks on the 12 Office-Caltech10 tasks, and the
    target accuracy of that pick beside the best k (read off the target
    labels: the bound no criterion can beat) and the fixed k = 100."""
    import argparse
    import time

    from threadpoolctl import threadpool_limits

    from common.errors import main_guard

    from .data import load_domain, parse_tasks

    @main_guard
    def run(argv):
        p = argparse.ArgumentParser(
            prog="python -m mmd.scoring",
            description="Label-free model selection on Office-Caltech10 SURF: the k of SA "
                        "(with LogisticRegression) picked by prediction entropy, importance-"
                        "weighted validation (KLIEP), soft neighbourhood density and plain "
                        "source cross-validation, against the target accuracy of every k.")
        # every command takes --verbose (common.startup); this one never loads TensorFlow, so it changes nothing
        p.add_argument("--verbose", action="store_true", help="accepted as on every command; nothing to show here")
        p.add_argument("--data-dir", required=True, help="the Office-Caltech10 SURF folder")
        p.add_argument("--tasks", default="all", help="'all' or e.g. 'C->A,W->D'")
        p.add_argument("--grid", default="10,20,50,100,200", help="the k to choose from")
        args = p.parse_args(argv)
        tasks = parse_tasks(args.tasks)
        try:
            grid = [int(k) for k in args.grid.split(",") if k.strip()]
        except ValueError:
            raise InputError(f"--grid takes a comma list of integers, got {args.grid!r}") from None
        if not grid or min(grid) < 1:
            raise InputError(f"--grid takes a comma list of integers >= 1, got {args.grid!r}")
        domains = {d for t in tasks for d in t.split("->")}
        data = {d: load_domain(args.data_dir, d) for d in sorted(domains)}
        names = ("entropy", "iwv", "snd", "source_cv")
        print(f"{'task':<6}" + "".join(f" {'k=' + str(k):>7}" for k in grid)
              + "".join(f" {n:>10}" for n in names) + f" {'s':>6}")
        picked = {n: [] for n in names}
        best, fixed = [], []
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):   # see mmd.weighting.kmm_weights
            for task in tasks:
                t = time.perf_counter()
                (Xs, ys), (Xt, yt) = data[task[0]], data[task[-1]]
                accuracy, picks = choose_k(Xs, ys, Xt, yt, grid)
                for n in names:
                    picked[n].append(accuracy[picks[n]])
                best.append(max(accuracy.values()))
                fixed.append(accuracy.get(100, np.nan))
                print(f"{task:<6}" + "".join(f" {accuracy[k]:>7.2f}" for k in grid)
                      + "".join(f" {'k=' + str(picks[n]):>10}" for n in names)
                      + f" {time.perf_counter() - t:>6.1f}", flush=True)
        print("average target accuracy (%) of the k picked by: "
              + ", ".join(f"{n} {np.mean(picked[n]):.2f}" for n in names)
              + f"; best k per task {np.mean(best):.2f}"
              + (f"; k = 100 {np.mean(fixed):.2f}" if 100 in grid else "")
              + f"  ({time.perf_counter() - t0:.1f} s)")
        return 0

    return run(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
