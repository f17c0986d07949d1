"""``python -m seqflows``: the ``seqflows`` command (:mod:`seqflows.app.cli`)."""

from .app.cli import main

raise SystemExit(main())
