"""Simulated ALMA projects (real CASA) and the local archive that serves them."""
