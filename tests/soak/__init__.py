"""The soak (bench/soak.py) as a test."""
