"""Fault injection on real tipcd pairs linked through the impairment relay."""
