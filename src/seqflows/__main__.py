"""``python -m seqflows``: the ``seqflows`` command."""

from .cli import main

raise SystemExit(main())
