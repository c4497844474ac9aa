"""The evaluation protocol: how images are asked of a generator, and the fixed numbers of the scoring.

Light tier (numpy only). Two quality numbers compare only if they were measured the
same way, so everything that decides the way lives here, stamped into every report as
`PROTOCOL_VERSION`:

* `cycle_labels`, with `gankit.contract.sample_latent`: the one rule that turns (n, seed)
  into latent vectors and digit labels. `gankit evaluate` (on an export or a checkpoint), the
  training-time evaluator behind ``--eval-every`` and `gankit.runtime.OnnxGenerator`
  all draw through it (`evaluation_inputs` for the first two), so the ``best`` checkpoint
  is picked on the very images `gankit evaluate` later scores;
* the sizes of the random subsets the metrics use (`gankit.eval.maths` takes them as
  defaults) and the thresholds of the coverage alarm.

Bump `PROTOCOL_VERSION` when any of it, the classifier or the reference values change.
Version 2: the classifier has an 11th class, "not a digit" (`NOT_A_DIGIT`), and an image
read as no digit counts as wrong for digit accuracy and as missing for digit coverage.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# The latent rule is the model contract's (one home); evaluation re-exports it for its callers.
from gankit.contract import NOISES, sample_latent  # noqa: F401

PROTOCOL_VERSION = 2

NUM_DIGITS = 10
# The classifier's 11th output: the image is no digit at all (noise, blank, a blob).
NOT_A_DIGIT = 10
NUM_CLASSES = NUM_DIGITS + 1
MAX_ENTROPY_BITS = math.log2(NUM_DIGITS)

# The seed `gankit evaluate` uses by default and the training-time evaluator always uses.
DEFAULT_SEED = 0
# The real split numbers are compared with by default.
DEFAULT_REFERENCE = "test"

CLASSIFIER_SCORE_SPLITS = 10
# p(y) is estimated per split, and a split of m images biases the score down by about
# exp(-9 / 2m) (6% at m = 75, under 0.5% at m = 1000); hence splits of at least 1000.
CLASSIFIER_SCORE_MIN_SPLIT = 1000
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
DIVERSITY_MAX_PER_DIGIT = 500
DIVERSITY_MIN_PER_DIGIT = 2
# Alarm when the digit entropy falls this many bits below what the intended digits
# (or real MNIST, for unconditional models) would give: losing a quarter of the mass of
# half the digits costs about that much, while sampling noise at n >= 200 costs < 0.05.
ENTROPY_ALARM_DROP_BITS = 0.25
# A digit is "starved" when it gets under this share of the images it should get; only
# judged where at least STARVED_MIN_EXPECTED images were expected, so chance cannot trip it.
STARVED_SHARE = 0.25
STARVED_MIN_EXPECTED = 20
# Alarm when more than this share of the images reads as no digit: real MNIST test
# digits stay well under 1% (see the reference's not_a_digit_share).
NOT_A_DIGIT_ALARM_SHARE = 0.05
# Fewer images than this make per-digit numbers and the FD too noisy to be worth showing.
RECOMMENDED_SAMPLES = 2000

def cycle_labels(digits: Sequence[int], n: int) -> np.ndarray:
    """int64 [n]: ``digits`` repeated in order (0,1,..,9,0,1,..), so each gets n/k within one."""
    digits = np.asarray(list(digits), dtype=np.int64)
    if digits.ndim != 1 or digits.size == 0:
        raise ValueError("cycle_labels needs at least one digit")
    return np.resize(digits, int(n))


def evaluation_inputs(n: int, *, z_dim: int, noise: str, digits: Sequence[int],
                      seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The images an evaluation asks for: (z float32 [n, z_dim], labels int64 [n]).

    The latents are one draw of `sample_latent` seeded by ``seed``; the labels cycle
    through ``digits`` sorted (a model's classes, or the subset asked for). A model that
    takes no digit gets the labels too and ignores them; its report has no intended digits.
    """
    return sample_latent(n, z_dim, noise, int(seed)), cycle_labels(sorted(digits), n)
