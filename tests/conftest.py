"""Shared pytest set-up. Notebooks under tests/ are data (sample submissions), never nbval tests."""
collect_ignore_glob = ["*.ipynb", "*/*.ipynb", "*/*/*.ipynb", "*/*/*/*.ipynb"]
