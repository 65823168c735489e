"""Streamlit review app, a thin client of the Python API. Not built yet."""
