"""Controllers: loops that make the running system match the stored intent."""
