"""``python -m benchmarks``: see benchmarks/suite/cli.py."""

from benchmarks.suite.cli import main

raise SystemExit(main())
