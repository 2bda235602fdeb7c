"""``python -m drills``: see drills.cli."""

from drills.cli import main

main()
