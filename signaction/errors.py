"""The one exception type that means "the caller gave us something wrong" (exit code 2)."""


class InputError(Exception):
    """Bad input or configuration: reported as one line, exit code 2, nothing signed.

    The message must say what is wrong and where (config key path, image line), and must never
    contain a secret value.
    """
