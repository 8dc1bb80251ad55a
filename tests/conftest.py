"""Shared pytest set-up. Notebooks under tests/ are data (sample submissions), never nbval tests."""
import os

collect_ignore_glob = ["*.ipynb", "*/*.ipynb", "*/*/*.ipynb", "*/*/*/*.ipynb"]

os.environ.setdefault("MPLBACKEND", "Agg")
