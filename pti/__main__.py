"""``python -m pti`` runs the command-line interface."""
from pti.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
