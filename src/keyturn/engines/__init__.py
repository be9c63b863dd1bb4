"""Engine adapters: drivers that read and change credentials on real database engines."""
