"""Sim tests run on virtual time only; nothing here sleeps or opens sockets."""
