"""The executed bilingual book of the notebook suite: ``bash book/build.sh`` builds ``book/_build/html/``."""
