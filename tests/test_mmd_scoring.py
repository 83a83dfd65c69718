"""Label-free model selection scorers (mmd.scoring) in GridSearchCV."""
import os

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from mmd.alignment import SA
from mmd.scoring import (
    importance_weighted_scorer,
    prediction_entropy_scorer,
    soft_neighbourhood_density,
    soft_neighbourhood_density_scorer,
    target_probabilities,
)
from mmd.solvers import TCA
from mmd.validation import InputError
from mmd.weighting import KLIEP, KMM


class Fixed:
    """A fitted 'estimator' with given target probabilities."""

    def __init__(self, P):
        self.P = np.asarray(P, dtype=float)

    def get_params(self):
        return {"Xt": np.zeros((len(self.P), 1))}

    def predict_proba(self, X):
        return self.P


def test_prediction_entropy_is_minus_the_mean_entropy():
    scorer = prediction_entropy_scorer()
    assert scorer(Fixed(np.full((4, 3), 1 / 3)), None) == pytest.approx(-np.log(3))
    assert scorer(Fixed(np.eye(3)), None) == pytest.approx(0.0, abs=1e-12)
    P = np.array([[0.5, 0.5], [0.9, 0.1]])
    expected = -np.mean([np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))])
    assert scorer(Fixed(P), None) == pytest.approx(expected)


def snd_by_loops(F, tau):
    F = F / np.linalg.norm(F, axis=1, keepdims=True)
    total = 0.0
    for j in range(len(F)):
        s = np.array([F[j] @ F[k] / tau for k in range(len(F)) if k != j])
        p = np.exp(s - s.max())
        p /= p.sum()
        total += -(p * np.log(p)).sum()
    return total / len(F)


def test_soft_neighbourhood_density_formula_and_what_it_prefers():
    rng = np.random.default_rng(0)
    F = rng.dirichlet(np.ones(4), size=12)
    assert soft_neighbourhood_density(F, 0.05) == pytest.approx(snd_by_loops(F, 0.05))
    assert soft_neighbourhood_density(F, 1.0) == pytest.approx(snd_by_loops(F, 1.0))
    # two tight groups of confident predictions: every sample has 9 equal
    # neighbours (SND near log 9); scattered predictions have no dense
    # neighbourhood
    tight = np.repeat(np.eye(10)[:2], 10, axis=0) + 0.001 * rng.random((20, 10))
    scattered = rng.dirichlet(np.ones(10), size=20)
    assert soft_neighbourhood_density(tight) == pytest.approx(np.log(9), abs=0.01)
    assert soft_neighbourhood_density(tight) > soft_neighbourhood_density(scattered) + 0.5
    scorer = soft_neighbourhood_density_scorer()
    assert scorer(Fixed(tight), None) == pytest.approx(soft_neighbourhood_density(tight))


def covariate_shift(seed, ns=300, nt=300):
    """1-D shift N(0, 1) -> N(1.5, 0.5^2) with a label that a threshold
    learnt on the whole source gets wrong where the target lives."""
    rng = np.random.default_rng(seed)
    Xs = rng.normal(0.0, 1.0, (ns, 1))
    Xt = rng.normal(1.5, 0.5, (nt, 1))

    def label(X):
        return ((X[:, 0] > -0.5) & (X[:, 0] < 1.8)).astype(int)

    ratio = lambda X: norm.pdf(X[:, 0], 1.5, 0.5) / norm.pdf(X[:, 0], 0.0, 1.0)  # noqa: E731
    return Xs, label(Xs), Xt, label(Xt), ratio


@pytest.mark.parametrize("weighting", ["true", KLIEP(random_state=0), KMM()])
def test_importance_weighted_accuracy_estimates_the_target_accuracy(weighting):
    plain_error, weighted_error = [], []
    for seed in range(4):
        Xs, ys, Xt, yt, ratio = covariate_shift(seed)
        # a model fitted on another source draw, scored on this one
        Xf, yf, _, _, _ = covariate_shift(seed + 10)
        model = LogisticRegression().fit(Xf, yf)
        target_acc = model.score(Xt, yt)
        plain_error.append(abs(model.score(Xs, ys) - target_acc))
        scorer = importance_weighted_scorer(ratio if weighting == "true" else weighting, Xt=Xt)
        weighted_error.append(abs(scorer(model, Xs, ys) - target_acc))
    assert np.mean(plain_error) > 0.15           # what plain source validation gets wrong
    assert np.mean(weighted_error) < 0.4 * np.mean(plain_error)


def test_importance_weighted_scorer_with_a_fitted_kliep_uses_its_ratio():
    Xs, ys, Xt, _, _ = covariate_shift(3)
    kliep = KLIEP(random_state=0).fit(Xs, ys, Xt)
    scorer = importance_weighted_scorer(kliep)
    w = kliep.density_ratio(Xs[:50])
    correct = kliep.predict(Xs[:50]) == ys[:50]
    assert scorer(kliep, Xs[:50], ys[:50]) == pytest.approx(w @ correct / w.sum())


def test_grid_search_with_each_scorer_and_the_Xt_parameter():
    Xs, ys, Xt, yt, _ = covariate_shift(4)
    for scoring in (prediction_entropy_scorer(), importance_weighted_scorer(),
                    soft_neighbourhood_density_scorer()):
        grid = GridSearchCV(KLIEP(Xt=Xt, random_state=0),
                            {"estimator": [LogisticRegression(C=0.01), LogisticRegression(C=1.0)]},
                            scoring=scoring, cv=2).fit(Xs, ys)
        assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    # the importance-weighted choice between the unweighted model and KMM's
    # is the one that is better on the target
    grid = GridSearchCV(KMM(Xt=Xt), {"B": [1.0 + 1e-9, 1000.0]},   # B ~ 1: weights ~ 1
                        scoring=importance_weighted_scorer(KMM()), cv=3).fit(Xs, ys)
    accs = [KMM(Xt=Xt, B=b).fit(Xs, ys).score(Xt, yt) for b in (1.0 + 1e-9, 1000.0)]
    assert grid.best_params_["B"] == (1.0 + 1e-9, 1000.0)[int(np.argmax(accs))]


def test_mmd_estimators_through_their_classifier_and_transform():
    Xs, ys, Xt, _, _ = covariate_shift(5)
    Xs2, Xt2 = np.hstack([Xs, Xs ** 2]), np.hstack([Xt, Xt ** 2])
    tca = TCA(n_components=2, classifier=LogisticRegression(), Xt=Xt2).fit(Xs2, ys)
    P = target_probabilities(tca, Xt2)
    np.testing.assert_allclose(P, tca.classifier_.predict_proba(tca.transform(Xt2)))
    assert np.isfinite(prediction_entropy_scorer()(tca, Xs2, ys))
    sa = SA(n_components=1, Xt=Xt2).fit(Xs2, ys)
    assert np.isfinite(soft_neighbourhood_density_scorer(features="transform")(sa, Xs2))
    with pytest.raises(InputError, match="gives no class probabilities"):
        prediction_entropy_scorer()(TCA(n_components=2, Xt=Xt2).fit(Xs2, ys), Xs2)


def test_a_missing_target_is_one_line():
    Xs, ys, Xt, _, _ = covariate_shift(6)
    est = KLIEP().fit(Xs, ys, Xt)          # the target given to fit, not as a parameter
    with pytest.raises(InputError, match="needs the target samples"):
        prediction_entropy_scorer()(est, Xs)
    assert np.isfinite(prediction_entropy_scorer(Xt=Xt)(est, Xs))
    with pytest.raises(InputError, match="y is needed"):
        importance_weighted_scorer(Xt=Xt)(est, Xs)
    with pytest.raises(InputError, match="features must be"):
        soft_neighbourhood_density_scorer(Xt=Xt, features="x")(est, Xs)


DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                        "office_caltech10_surf")


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Office-Caltech10 SURF not found")
def test_command_picks_k_on_one_task(capsys):
    from mmd import scoring

    assert scoring.main(["--data-dir", DATA_DIR, "--tasks", "W->D", "--grid", "10,100"]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("W->D"))
    # SA + LR target accuracies of mmd/README.md for k = 10 and k = 100
    assert row[1:3] == ["53.50", "78.34"]
    assert all(pick in ("k=10", "k=100") for pick in row[3:7])


def test_command_bad_grid_is_one_line(capsys):
    from mmd import scoring

    with pytest.raises(SystemExit) as exit_info:
        scoring.main(["--data-dir", ".", "--grid", "1,x"])
    assert exit_info.value.code == 2
    assert "error: --grid takes a comma list of integers" in capsys.readouterr().err
