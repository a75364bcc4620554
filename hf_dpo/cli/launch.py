"""``hf-dpo train --accelerate_config NAME|PATH``: the same command on several GPUs, relaunched through ``accelerate
launch`` with one of the configs shipped in ``hf_dpo/cli/accelerate_configs/`` (or a config file of your own).

    hf-dpo train --accelerate_config zero3 recipes/multi_gpu/llama3-8b-full-zero3.yaml
    # runs: python -m accelerate.commands.launch --config_file .../zero3.yaml -m hf_dpo.cli train RECIPE.yaml

The relaunched command is the same ``hf-dpo train`` without ``--accelerate_config`` (it runs once per process and
must not launch again). The few ``accelerate launch`` flags a user changes per machine (``--num_processes``,
``--main_process_port``, ...) go to the launcher; every other flag goes to ``train``.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from hf_dpo.config.recipe import UserError

logger = logging.getLogger("hf_dpo")

CONFIGS_DIR = Path(__file__).with_name("accelerate_configs")
CONFIG_FLAG = "--accelerate_config"
# accelerate launch's flags that change from one machine to the next; each takes one value
LAUNCH_FLAGS = ("--num_processes", "--main_process_port", "--num_machines", "--machine_rank", "--main_process_ip")
# set in the relaunched processes: a second --accelerate_config there would launch processes from every process
LAUNCHED_VARIABLE = "HF_DPO_LAUNCHED"


def accelerate_config_names() -> list[str]:
    """The names ``--accelerate_config`` takes: the configs shipped with hf_dpo, without ``.yaml``."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.yaml"))


def resolve_accelerate_config(value: str) -> Path:
    """The config file ``value`` names: an existing file, else a shipped config of that name; else a UserError that
    lists the names."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / f"{value}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(
        f"{CONFIG_FLAG} {value!r}: neither a file nor a config shipped with hf_dpo; the shipped ones are "
        f"{', '.join(accelerate_config_names())} (or give the path of an accelerate config YAML)"
    )


def take_launch_flags(flags: list[str]) -> tuple[str | None, list[str], list[str]]:
    """Split ``hf-dpo train``'s flags into the ``--accelerate_config`` value (None: not given), the flags for
    ``accelerate launch`` (:data:`LAUNCH_FLAGS`, only with ``--accelerate_config``) and the flags for ``train``."""
    config, launch, rest = None, [], []
    index = 0
    while index < len(flags):
        flag = flags[index]
        name, has_value, inline = flag.partition("=")
        if name == CONFIG_FLAG or name in LAUNCH_FLAGS:
            if has_value:
                value = inline
            elif index + 1 < len(flags) and not flags[index + 1].startswith("--"):
                value = flags[index + 1]
                index += 1
            else:
                raise UserError(f"{name} needs a value")
            if name == CONFIG_FLAG:
                config = value
            else:
                launch += [name, value]
        else:
            rest.append(flag)
        index += 1
    if launch and config is None:
        raise UserError(
            f"{launch[0]} is a flag of accelerate launch: give it with {CONFIG_FLAG} "
            f"({', '.join(accelerate_config_names())} or a config file)"
        )
    return config, launch, rest


def launch_command(config: str, launch_flags: list[str], train_flags: list[str], debug: bool = False) -> list[str]:
    """The command that runs ``hf-dpo train TRAIN_FLAGS`` under ``accelerate launch`` with ``config``: the
    launcher as a module of this interpreter (the ``accelerate`` script need not be on PATH)."""
    path = resolve_accelerate_config(config)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path), *launch_flags]
    return [*launcher, "-m", "hf_dpo.cli", *(["--debug"] if debug else []), "train", *train_flags]


def relaunch(config: str, launch_flags: list[str], train_flags: list[str], debug: bool = False) -> int:
    """Run ``hf-dpo train`` under ``accelerate launch`` and return its exit status (each process reports its own
    errors, and its own Ctrl-C: :class:`~hf_dpo.trainer.TrainingInterrupted`)."""
    if os.environ.get(LAUNCHED_VARIABLE) or os.environ.get("LOCAL_RANK") is not None:
        raise UserError(
            f"{CONFIG_FLAG} is given to hf-dpo train run by hand, not inside a launcher (accelerate launch, "
            "torchrun) that already started several processes"
        )
    command = launch_command(config, launch_flags, train_flags, debug)
    logger.info("launching: %s", shlex.join(command))
    process = subprocess.Popen(command, env={**os.environ, LAUNCHED_VARIABLE: "1"})
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the launched processes too (one process group): they stop at the step's end and save a
            # checkpoint; waiting for them (subprocess.run would kill them) lets them say where it is
            continue
