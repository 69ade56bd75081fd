"""tinykws: keyword spotting for microcontrollers."""
__version__ = "0.1.0"
