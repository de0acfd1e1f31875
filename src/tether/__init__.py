"""tether: the phone is the key to the car and the vault of its driver's data."""

__version__ = "0.1.0"
