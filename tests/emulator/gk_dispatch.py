"""moto's request dispatch without two lookups it repeated on every call; where a request goes is moto's.

moto 5.2.1's server, for every request:
- lists its own package directory (`os.listdir` and an `os.path.isdir` per entry, about 200) to ask whether the
  Host header names a service (`moto.backends.list_of_moto_modules`, from
  `DomainDispatcherApplication.get_backend_for_host`);
- lists the methods of the service's response class with `inspect.getmembers` to find the action's handler
  (`moto.core.utils.method_names_from_class`, from `BaseResponse.call_action`).

Sampled under the benchmark's warm load, the two were about a fifth of the emulator's time: about 1 ms of a call
that takes 4 to 5. AWS has nothing like it, and it is paid once per call however many calls go out together:
one Python process answers concurrent calls one after another, so a function that sends three reads side by
side was charged for three of these where AWS would overlap them. Neither answer changes while the server
runs (the package's folders are fixed; the project's patches add their handlers to the response classes when
their modules are imported, before the first request), so each is computed once and kept. `test_dispatch.py`
checks both against moto's own functions.
"""

from __future__ import annotations

import functools

import moto.backends
import moto.core.responses

moto_modules = moto.backends.list_of_moto_modules
method_names = moto.core.responses.method_names_from_class


@functools.cache
def list_of_moto_modules() -> frozenset[str]:
    """moto's service folders (what `moto.backends.list_of_moto_modules` yields), read once."""
    return frozenset(moto_modules())


@functools.cache
def method_names_from_class(clazz: type) -> list[str]:
    """The functions of a response class (what `moto.core.utils.method_names_from_class` lists), once per class."""
    return method_names(clazz)


moto.backends.list_of_moto_modules = list_of_moto_modules
moto.core.responses.method_names_from_class = method_names_from_class
