"""What the fake was asked to do, in order: (name, *details) tuples."""
calls: list[tuple] = []


def record(*call) -> None:
    calls.append(call)


def named(name: str) -> list[tuple]:
    return [c for c in calls if c[0] == name]
