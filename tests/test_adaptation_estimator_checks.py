"""scikit-learn's own estimator checks on ``adaptation.DomainAdapter`` (issue 24 section 3, issue 25 section 5).

``parametrize_with_checks`` runs every check of ``check_estimator`` as its
own test: the parameters stored as given, input validation with
scikit-learn's messages (NaN, inf, complex, sparse, empty, one sample, one
feature, continuous targets), ``NotFittedError`` before fit, one class, clone,
pickle, idempotent and seeded fits, dtypes. No check is expected to fail.

The instances are tiny (an 8-unit bottleneck, one 8-unit discriminator layer,
two epochs of batches of 16) so that the sixty-odd checks, each with a fit
or more, stay within a minute or so on two cores; each fit's cost is
mostly compiling its training step. The learning rate is raised to 0.1 so
that those few steps reach the accuracy ``check_classifiers_train`` asks of
a classifier on its blobs. DANN is the default method; AdaBN adds what the
others do not have (a second set of BatchNorm statistics, chosen by
``domain=``, that pickling and cloning must keep). DAN's MK-MMD step is the
slowest to compile; tests/test_adaptation_adapter.py trains it.
"""
from sklearn.utils.estimator_checks import parametrize_with_checks

from adaptation.adapter import DomainAdapter

TINY = dict(epochs=2, batch_size=16, bottleneck=8, discriminator_units=(8,), learning_rate=0.1, random_state=0)
INSTANCES = [DomainAdapter(method="dann", **TINY), DomainAdapter(method="adabn", **TINY)]


@parametrize_with_checks(INSTANCES)
def test_domain_adapter_passes_scikit_learn_checks(estimator, check):
    check(estimator)


def test_the_checked_instances_are_the_defaults_apart_from_their_size():
    """What the checks pass for is the estimator users get, not a special mode: only sizes, the
    learning rate and the seed differ from the defaults."""
    defaults = DomainAdapter().get_params()
    for instance in INSTANCES:
        changed = {key for key, value in instance.get_params().items() if value != defaults[key]}
        assert changed <= set(TINY) | {"method"}
    assert INSTANCES[0].method == DomainAdapter().method == "dann"

