"""preference_metric: reward accuracy, ties and margin of a preference model's scores on held-out pairs, and the
win rate of a trained model against its reference; an ``evaluate`` module shipped inside hf_dpo.

Load it by path (a Hub name would need the network)::

    import evaluate
    from hf_dpo.monitor.pair_metrics import PREFERENCE_METRIC_PATH

    metric = evaluate.load(PREFERENCE_METRIC_PATH)
    metric.compute(predictions=[[1.2, 0.3], [0.1, 0.4]], references=[0, 0])
    # reward_accuracy 0.5, reward_ties 0.0, reward_margin 0.3

The definitions live in :mod:`hf_dpo.monitor.pair_metrics` (tested there); this file only adapts them to
``evaluate``'s interface.
"""

import datasets
import evaluate

from hf_dpo.monitor.pair_metrics import ranking_metrics, reward_metrics, unpaired_reward_metrics

_DESCRIPTION = """Preference metrics of DPO-style training. Predictions are the implicit rewards of each pair's two
completions ([N, 2]); a reference is the index of the preferred column (0 when column 0 holds the chosen
completion, as DPOTrainer's predictions do). KTO rows are one reward each, with reference 1 for a desirable row.
With `policy_margins` and `reference_margins` (log p(chosen) - log p(rejected) under each model), it also reports
policy and reference accuracy and the win rate of the policy against its reference."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: [N, 2] rewards of each pair's completions, or [N] rewards of unpaired (KTO) rows.
    references: [N] index of the preferred column (pairs), or 1/0 for desirable/undesirable rows.
    policy_margins (optional): [N] log p(y_w) - log p(y_l) under the trained model.
    reference_margins (optional): [N] the same under the reference model.
Returns:
    reward_accuracy, reward_ties, reward_margin; with both margins, policy_accuracy, reference_accuracy and
    win_rate (wins, ties, losses).
"""

_CITATION = """@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Manning, Christopher D. and Ermon, Stefano
               and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PreferenceMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Value("int64"),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, policy_margins=None, reference_margins=None):
        if len(predictions) and not isinstance(predictions[0], float | int) and len(predictions[0]) == 2:
            metrics = reward_metrics(predictions, references)
        else:
            metrics = unpaired_reward_metrics(predictions, references)
        if policy_margins is not None and reference_margins is not None:
            metrics.update(ranking_metrics(policy_margins, reference_margins))
        return metrics
