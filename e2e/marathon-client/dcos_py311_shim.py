"""dcos 0.6.1 uses the collections.<ABC> aliases Python 3.10 removed; loaded by a .pth file."""
import collections
import collections.abc

for _name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Set", "MutableSet",
              "Iterable", "Callable", "Hashable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
