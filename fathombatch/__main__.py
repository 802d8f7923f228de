"""``python -m fathombatch`` runs the command line."""

from fathombatch.cli import main

if __name__ == "__main__":
    main()
