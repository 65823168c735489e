"""Streamlit review app: answers with highlighted citations, traces, strategies side by side
and reviewer verdicts. ``longdoc app`` starts it; the logic lives in plain modules
(``verdicts``, ``highlight``, ``compare``, ``runs``), ``review.py`` is the Streamlit script."""
