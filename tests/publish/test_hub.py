"""Pushing to the Hub, for real over HTTP: a Hub-compatible server on 127.0.0.1 receives the commits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import HubServer
from transformers import AutoModelForCausalLM

SCRIPT = Path(__file__).parents[1].joinpath("hub_push.py")
TOKEN = "hf_FakeTokenForPushTests0123456789"


def _push(tmp_path, hub, mode):
    environment = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,  # read when huggingface_hub is imported: hence a subprocess
        "HF_HUB_OFFLINE": "0",  # offline mode blocks even 127.0.0.1
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), str(SCRIPT.parent)]),  # this checkout's hf_dpo
        "OMP_NUM_THREADS": "1",
    }
    output_dir = tmp_path / mode
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(output_dir), mode],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    assert completed.returncode == 0 and "PUSHED" in completed.stdout, (completed.stderr[-3000:], hub.unknown)
    return output_dir, completed


def test_an_adapter_push_arrives_with_its_card_and_no_token(tmp_path):
    with HubServer() as hub:
        _, completed = _push(tmp_path, hub, "adapter")
    files = hub.repos["tester/tiny-dpo-adapter"]
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "tokenizer.json"} <= set(files)
    assert not any(name.startswith(("reference/", "checkpoint-")) for name in files)  # the trained adapter alone
    card = files["README.md"].decode()
    assert "library_name: peft" in card and "- dpo" in card and "- hf_dpo" in card and "rafailov2023direct" in card
    for name, content in files.items():
        assert TOKEN.encode() not in content, name
    assert TOKEN not in completed.stdout + completed.stderr
    assert all(auth == f"Bearer {TOKEN}" for auth in hub.authorizations)  # the token was used, and only sent


def test_a_merged_push_loads_back_as_a_plain_model(tmp_path):
    with HubServer() as hub:
        output_dir, _ = _push(tmp_path, hub, "merged")
    files = hub.repos["tester/tiny-dpo-merged"]
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(files)
    assert not any(name.startswith("adapter_") for name in files)
    card = files["README.md"].decode()  # a plain model now: loaded without peft, and the card says so
    assert "library_name: transformers" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert "merged into" in card and "rafailov2023direct" in card
    for name, content in files.items():
        assert TOKEN.encode() not in content, name
    downloaded = tmp_path / "downloaded"
    for name, content in files.items():
        (downloaded / name).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / name).write_bytes(content)
    model = AutoModelForCausalLM.from_pretrained(downloaded)
    tokenizer_config = json.loads(files["tokenizer_config.json"])
    assert tokenizer_config  # the tokenizer came along
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(downloaded)
    batch = tokenizer(["Question: is the fox good?"], return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    torch.testing.assert_close(logits, torch.load(output_dir / "expected_logits.pt"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", ["/api/unknown"])
def test_the_test_hub_records_what_it_does_not_serve(path):
    import urllib.error
    import urllib.request

    with HubServer() as hub, pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(hub.endpoint + path)
    assert hub.unknown == [f"GET {path}"]


def test_the_command_line_pushes_the_merged_model_with_its_card_and_plot(tmp_path):
    with HubServer() as hub:
        _push(tmp_path, hub, "cli")
    files = hub.repos["tester/tiny-dpo-cli"]
    assert {"model.safetensors", "config.json", "README.md", "training.png"} <= set(files)
    card = files["README.md"].decode()
    assert "library_name: transformers" in card and "![training curves](training.png)" in card
    assert not any(TOKEN.encode() in content for content in files.values())


def test_a_vision_language_adapter_arrives_with_its_processor_and_a_card_that_says_so(tmp_path):
    with HubServer() as hub:
        _push(tmp_path, hub, "vision")
    files = hub.repos["tester/tiny-dpo-vision"]
    assert {"adapter_model.safetensors", "adapter_config.json", "processor_config.json", "tokenizer.json"} <= set(
        files
    )
    card = files["README.md"].decode()
    assert "AutoModelForImageTextToText" in card and "AutoProcessor.from_pretrained" in card
    assert "| processor | LlavaProcessor |" in card and "| training images | 4 |" in card
    assert "| vision tower | frozen (the language model trained) |" in card
    assert "| batch layout | the shared prompt" in card


def test_a_merged_vision_language_push_loads_back_and_reads_images_as_trained(tmp_path):
    from tiny_vision import vision_rows
    from transformers import AutoModelForImageTextToText, AutoProcessor

    with HubServer() as hub:
        output_dir, _ = _push(tmp_path, hub, "vision-merged")
    files = hub.repos["tester/tiny-dpo-vision-merged"]
    downloaded = tmp_path / "downloaded"
    for name, content in files.items():
        (downloaded / name).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / name).write_bytes(content)
    model = AutoModelForImageTextToText.from_pretrained(downloaded)
    processor = AutoProcessor.from_pretrained(downloaded)
    row = vision_rows(1)[0]
    text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        logits = model.eval()(**processor(text=[text], images=[row["images"]], return_tensors="pt")).logits
    torch.testing.assert_close(logits, torch.load(output_dir / "expected_logits.pt"), atol=1e-5, rtol=1e-5)
