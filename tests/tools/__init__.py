"""Test tools shared by the fault tests, the soak and the bench."""
