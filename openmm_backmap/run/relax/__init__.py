"""run/relax layer."""
