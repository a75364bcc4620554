"""``python -m hf_dpo.cli``: the ``hf-dpo`` command (what ``accelerate launch -m hf_dpo.cli`` runs)."""

from hf_dpo.cli.dispatch import main

raise SystemExit(main())
