"""Streamlit AppTest: the page scripts of views/ run through app.py, their numbers checked against SQL."""
