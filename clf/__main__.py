"""`python -m clf …` runs the clf command line (see `clf --help`)."""

from clf.cli import main

if __name__ == "__main__":
    main()
