"""The test suite's no-network rule, for the pytest process and its
children.

``conftest.py`` installs it in the pytest process. ``sitecustomize.py``
next to this file installs it when any Python process starts with this
folder on its ``PYTHONPATH``, which ``conftest.subprocess_env`` puts there:
``tools/train.py`` runs, torchrun and its workers, and spawned workers, which
would otherwise rely on ``HF_HUB_OFFLINE`` alone.
"""
import socket

# The distributed tests talk to themselves over loopback.
LOOPBACK = {'127.0.0.1', 'localhost', '::1', '0.0.0.0', ''}


class NetworkAccessError(RuntimeError):
    pass


def check(address):
    if isinstance(address, tuple) and address and str(address[0]) not in \
            LOOPBACK:
        raise NetworkAccessError(f'test tried to reach {address}')


def install():
    """Make connections and name lookups beyond loopback raise
    :class:`NetworkAccessError`; returns a function that undoes it."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        check(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        check(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        check((host, ))
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo

    def undo():
        socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
        socket.getaddrinfo = getaddrinfo

    return undo
