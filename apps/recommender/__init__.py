"""Recommendations in a terminal (``python -m tuneforge.apps.recommender``)."""
