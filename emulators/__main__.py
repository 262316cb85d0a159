"""``python -m emulators --port 8089 [--provider NAME|all]``: see :mod:`emulators._command`."""

from ._command import main

raise SystemExit(main())
