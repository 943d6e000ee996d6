"""`python -m multinet` is the `multinet` command."""

from multinet.cli import main

raise SystemExit(main())
