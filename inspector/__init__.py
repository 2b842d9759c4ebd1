"""inspector: visual anomaly inspection with VAEGAN and discriminator attention."""

__version__ = "0.1.0"
