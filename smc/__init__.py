"""SMC Dashboard: the data and clinical logic behind a phase I Safety Monitoring Committee's screens."""

__version__ = "0.1.0"
