"""Predictions and scores: jobs over the event log and profiles whose results are predicted traits
(`profiles.predicted`), each written with the version of the model that made it."""
