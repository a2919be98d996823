"""``python -m tools.minipile fetch|build ...``"""

from tools.minipile.cli import main

raise SystemExit(main())
