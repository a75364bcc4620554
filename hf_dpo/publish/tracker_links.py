"""The pages of a run on the experiment trackers it logged to (``report_to``), for the model card: the W&B run,
the Trackio Space, the Comet experiment. A tracker that logs locally (Trackio without a Space, TensorBoard) has no
page to link; a callback whose tracker never started (``report_to`` named it, training had not begun) neither.

    tracker_links(trainer.callback_handler.callbacks)   # [("Weights & Biases", "https://wandb.ai/...")]
"""

from __future__ import annotations

from typing import Any

TRACKIO_SPACE_URL = "https://huggingface.co/spaces/{space_id}"


def _wandb(callback: Any) -> str | None:
    run = getattr(getattr(callback, "_wandb", None), "run", None)
    return getattr(run, "url", None) if run is not None else None


def _trackio(callback: Any) -> str | None:
    # the frozen static Space when training ended (trackio.freeze), else the live one; None: logged locally
    space_id = getattr(callback, "_static_space_id", None) or getattr(callback, "_space_id", None)
    return TRACKIO_SPACE_URL.format(space_id=space_id) if space_id else None


def _comet(callback: Any) -> str | None:
    return getattr(getattr(callback, "_experiment", None), "url", None)


# callback class name (transformers.integrations) -> (tracker's name, its run's page or None)
LINKS = {
    "WandbCallback": ("Weights & Biases", _wandb),
    "TrackioCallback": ("Trackio", _trackio),
    "CometCallback": ("Comet", _comet),
}


def tracker_links(callbacks: list[Any]) -> list[tuple[str, str]]:
    """``(tracker, url)`` of each callback in ``callbacks`` whose tracker has a page for the run."""
    links = []
    for callback in callbacks:
        names = [cls.__name__ for cls in type(callback).__mro__]
        found = next((LINKS[name] for name in names if name in LINKS), None)
        if found is not None and (url := found[1](callback)):
            links.append((found[0], str(url)))
    return links
