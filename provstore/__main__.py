"""``python -m provstore``."""

from provstore.cli.main import main

main()
