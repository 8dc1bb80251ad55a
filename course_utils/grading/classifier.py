"""The trusted evaluation of a trained network, as the grader imports it.

    >>> classifier_problem(state_dict, {"architecture": "apparel_mlp", "min_accuracy": 0.8})  # doctest: +SKIP

The rule itself lives in ``course_utils.classifier``, shared with the learner's ``checks.check_classifier``
(one rule for both sides, like ``course_utils.compare``): the grader applies it in its own process to the
record file, with the parameters of the solution's record, so what the notebook's check said is what the
grade says, and code in the learner's kernel cannot change it. The grader never runs learner code: it rebuilds
the network from the recorded layer list (standard ``torch.nn`` layers only) or the prescribed architecture,
checks the spec, loads the weights and measures accuracy on the official test images.
"""
from __future__ import annotations

from course_utils.classifier import (APPAREL_HIDDEN, ARCHITECTURES, MAX_ACTIVATION, MAX_BATCH_NUMBERS,
                                     apparel_accuracy, build_apparel_classifier, classifier_problem,
                                     classifier_report, designed_network)

__all__ = ["APPAREL_HIDDEN", "ARCHITECTURES", "MAX_ACTIVATION", "MAX_BATCH_NUMBERS", "apparel_accuracy",
           "build_apparel_classifier", "classifier_problem", "classifier_report", "designed_network"]
