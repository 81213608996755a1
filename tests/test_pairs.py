"""Next-pair suggestion: Bayesian Bradley-Terry posterior + BALD information gain."""

import numpy as np

from rankui.pairs import bt_posterior, information_gain, suggest_pair


def test_posterior_follows_the_labels():
    prior = np.zeros(3)
    mean, cov = bt_posterior(prior, [(0, 1, 1.0)] * 5 + [(1, 2, 1.0)] * 5)
    assert mean[0] > mean[1] > mean[2]
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert cov[0, 0] < 1.0  # labels shrink the prior variance
    tie_mean, _ = bt_posterior(prior, [(0, 1, 0.5)] * 10)
    assert abs(tie_mean[0] - tie_mean[1]) < 1e-9


def test_information_gain_prefers_close_and_uncertain_pairs():
    gains = information_gain(np.array([0.0, 3.0, 0.0]), np.array([2.0, 2.0, 0.01]))
    assert gains[0] > gains[1] and gains[0] > gains[2] and np.all(gains >= 0)


def test_suggestion_is_informative_and_skips_asked_pairs():
    scores = np.array([0.0, 5.0, 5.05, 10.0])  # 1 and 2 are the near-tie the model is unsure of
    rng = np.random.default_rng(0)
    first = suggest_pair(scores, [], rng=rng)
    assert {first.left, first.right} == {1, 2}
    second = suggest_pair(scores, [(2, 1, 1.0)], asked={frozenset((1, 2))}, rng=rng)
    assert {second.left, second.right} != {1, 2}
    placements = [suggest_pair(scores, [], rng=rng).swapped for _ in range(40)]
    assert 5 < sum(placements) < 35  # left/right placement is randomised
    assert suggest_pair([1.0], []) is None
    everything = {frozenset((a, b)) for a in range(4) for b in range(a + 1, 4)}
    assert suggest_pair(scores, [], asked=everything) is None


def test_active_choice_sorts_faster_than_random():
    """With a noiseless oracle, BALD pairs recover the order with fewer labels than random pairs."""
    rng = np.random.default_rng(1)
    truth = rng.normal(size=12)
    flat = np.zeros(12)

    def errors_after(chooser, budget=25):
        labels, asked = [], set()
        for _ in range(budget):
            i, j = chooser(labels, asked)
            labels.append((i, j, float(truth[i] > truth[j])))
            asked.add(frozenset((i, j)))
        mean, _ = bt_posterior(flat, labels)
        a, b = np.triu_indices(12, 1)
        return np.mean(np.sign(mean[a] - mean[b]) != np.sign(truth[a] - truth[b]))

    def active(labels, asked):
        s = suggest_pair(flat, labels, asked, rng=rng)
        return s.left, s.right

    def random(labels, asked):
        while True:
            i, j = rng.choice(12, 2, replace=False)
            if frozenset((int(i), int(j))) not in asked:
                return int(i), int(j)

    assert errors_after(active) < errors_after(random)
