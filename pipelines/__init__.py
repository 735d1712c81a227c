"""Recipes (train), configuration, MLflow tracking, the report and the command line."""
