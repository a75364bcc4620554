"""What watches a run from below the trainer: the doctor, the samples, generation, the pair metrics.

- :mod:`~hf_dpo.monitor.doctor`: one warning per known failure, with its likely cause and a knob;
- :mod:`~hf_dpo.monitor.samples`: answers to fixed prompts at every evaluation (:mod:`~hf_dpo.monitor.trackers`
  sends them to W&B, Comet, MLflow, TensorBoard, Trackio);
- :mod:`~hf_dpo.monitor.generation`: answers generated from tokenized prompts, with their lengths;
- :mod:`~hf_dpo.monitor.pair_metrics`: preference metrics of a held-out split as pure functions
  (``preference_metric/`` is the same as an ``evaluate`` module).
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "add_tool_callbacks": "hf_dpo.monitor.attach",
        "DoctorCallback": "hf_dpo.monitor.doctor",
        "SamplesCallback": "hf_dpo.monitor.samples",
    },
)
