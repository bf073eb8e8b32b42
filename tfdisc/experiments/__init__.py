"""absl experiment binaries: ``python -m tfdisc.experiments.<name>``."""
