"""python -m loops.protocols: publish the identity of every new shipped protocol (versions.json)."""
from loops.protocols import publish

print("published:", ", ".join(publish()) or "nothing new")
