"""Scoring labels: benchmark datasets and protocols, the confusion matrix, folder scoring."""
