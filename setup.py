"""lbdns' two small C extensions (everything else is in pyproject.toml).

Both are optional: an install without a C compiler or Python's headers still works — the UDP
listeners then use the asyncio datagram transport, and the query scan its Python twin
(lbdns/wire/scan.py). setup.py rather than pyproject's ``[tool.setuptools.ext-modules]``, which
setuptools still marks experimental.
"""

from setuptools import Extension, setup

WARNINGS = ["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]

setup(
    ext_modules=[
        # the UDP batch loop (recvmmsg/sendmmsg), Linux only
        Extension("lbdns.server._mmsg", ["lbdns/server/_mmsg.c"], optional=True, extra_compile_args=WARNINGS),
        # the serving plan's one pass over a query
        Extension("lbdns.wire._scan", ["lbdns/wire/_scan.c"], optional=True, extra_compile_args=WARNINGS),
    ],
)
