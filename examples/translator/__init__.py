"""A live meeting translator: hears English in a meeting and speaks the Spanish translation into it (Apertium)."""
