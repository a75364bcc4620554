"""The run's pages on its trackers, for the model card: found on the integration callbacks Trainer made."""

from types import SimpleNamespace

from hf_dpo.publish.tracker_links import tracker_links


def _callback(class_name, **attributes):
    return type(class_name, (), {})() if not attributes else type(class_name, (), attributes)()


def test_each_tracker_with_a_page_is_linked():
    wandb = _callback("WandbCallback", _wandb=SimpleNamespace(run=SimpleNamespace(url="https://wandb.ai/me/p/runs/1")))
    trackio = _callback("TrackioCallback", _space_id="me/live", _static_space_id="me/frozen")
    comet = _callback("CometCallback", _experiment=SimpleNamespace(url="https://www.comet.com/me/p/abc"))
    assert tracker_links([wandb, trackio, comet, _callback("PrinterCallback")]) == [
        ("Weights & Biases", "https://wandb.ai/me/p/runs/1"),
        ("Trackio", "https://huggingface.co/spaces/me/frozen"),  # the frozen snapshot outlives the live Space
        ("Comet", "https://www.comet.com/me/p/abc"),
    ]


def test_a_tracker_without_a_page_is_left_out():
    finished = _callback("WandbCallback", _wandb=SimpleNamespace(run=None))
    local = _callback("TrackioCallback", _space_id=None, _static_space_id=None)
    assert tracker_links([finished, local, _callback("TensorBoardCallback")]) == []
