"""Built-in nvshim modifier (being written)."""
