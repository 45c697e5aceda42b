"""An object whose unpickling is recorded: tests put it where a loader must never unpickle."""

#: one True per unpickling; clear it before the load under test
unpickled = []


def record_unpickling():
    unpickled.append(True)
    return "pwned"


class Canary:
    def __reduce__(self):
        return (record_unpickling, ())
