"""``python -m provstore``."""

from provstore.cli import main

main()
