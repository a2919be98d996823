"""``python -m hullft.data.minipile_build fetch|build ...``"""

from hullft.data.minipile_build.cli import main

raise SystemExit(main())
