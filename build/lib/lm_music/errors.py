class UserError(Exception):
    """Bad input from the user: the entry points print its message as one line, without a traceback."""
