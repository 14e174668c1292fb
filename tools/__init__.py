"""Maintainer tools for the notebook suite (not part of the runtime package a learner imports).

    python -m tools.suite ...     pair, twin, check and stamp the notebooks; regenerate the README tables
    python -m tools.release ...   write the student versions of the assignments
    python -m tools.bench         re-measure docs/benchmarks.md
"""
