"""
Fakes checked against the interface of the seam they stand in for.

zope's ``verifyObject`` checks a whole implementation; a unit test's fake
often has only the few methods the code under test calls. ``verify_fake``
checks those: each is one of the interface's, with a signature the interface
allows, so a fake cannot drift from the real seam (a renamed method, a
parameter the real one does not take) and make a test pass that production
would fail.
"""

from typing import Any

from zope.interface.exceptions import BrokenImplementation, Invalid, MultipleInvalid
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject


def verify_fake(interface: InterfaceClass, fake: Any) -> None:
    """
    Raise AssertionError unless every public method of ``fake`` is one of
    ``interface``'s (its bases' included) with a compatible signature;
    methods the fake leaves out are fine.
    """
    names = set(interface.names(all=True))
    extra = sorted(
        name for name in dir(fake) if not name.startswith("_") and callable(getattr(fake, name)) and name not in names
    )
    if extra:
        raise AssertionError(f"{type(fake).__name__} has methods {interface.__name__} does not: {', '.join(extra)}")
    try:
        verifyObject(interface, fake, tentative=True)
    except MultipleInvalid as e:
        problems: list[Invalid] = [p for p in e.exceptions if not isinstance(p, BrokenImplementation)]
    except BrokenImplementation:  # one method left out, and nothing else
        problems = []
    except Invalid as e:
        problems = [e]
    else:
        problems = []
    if problems:
        raise AssertionError(f"{type(fake).__name__} is not a fake of {interface.__name__}: " + "; ".join(map(str, problems)))
