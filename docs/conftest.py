"""The scripts under docs/ are run by tests/test_docs.py; pytest must not import them as test modules (with
``--doctest-modules`` it would import, and so run, every one of them)."""

collect_ignore_glob = ["*.py", "examples/*.py"]
