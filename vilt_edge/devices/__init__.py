"""Device profiles as data (the compile issue builds them here)."""
