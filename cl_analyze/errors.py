"""The one exception type the project raises for problems a user can fix."""


class CLAnalyzeError(Exception):
    """A problem with the user's input or environment, stated in one line with its fix.

    ``cli.main`` turns it into a message on stderr and exit code 2, never a traceback.
    """
