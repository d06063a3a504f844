"""``python -m labkit ...``: the labkit command of this very Python, whatever ``labkit`` is first on PATH."""

from labkit.cli import main

raise SystemExit(main())
