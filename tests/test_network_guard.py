"""The no-network guard (tests/netguard) blocks what it claims to, in the
pytest process and in the processes tests start."""
import inspect
import socket

import pytest
import torch.multiprocessing as mp

from conftest import NetworkAccessError
from test_distributed import free_port
from test_train_e2e import run_tool

# TEST-NET-1 (RFC 5737) is never routed: without the guard a connection
# fails with an OSError or a timeout, never with NetworkAccessError.
OUTSIDE = ('192.0.2.1', 80)


def reach_out():
    """The name of what a connection beyond loopback raises here."""
    try:
        socket.create_connection(OUTSIDE, timeout=1)
    except Exception as e:
        return type(e).__name__
    return 'connected'


REACH_OUT = (f'import socket\nOUTSIDE = {OUTSIDE}\n'
             f'{inspect.getsource(reach_out)}\nprint(reach_out())\n')


def test_guard_blocks_connections_and_lookups():
    assert reach_out() == 'NetworkAccessError'
    with pytest.raises(NetworkAccessError):
        socket.getaddrinfo('huggingface.co', 443)
    with socket.socket() as s:
        s.settimeout(1)
        with pytest.raises(NetworkAccessError):
            s.connect(OUTSIDE)
        with pytest.raises(NetworkAccessError):
            s.connect_ex(OUTSIDE)


def test_guard_lets_loopback_through():
    with socket.create_server(('127.0.0.1', 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_tool_subprocesses_are_guarded():
    # run_tool starts every tools/*.py run of the suite.
    assert run_tool('-c', REACH_OUT).stdout.split() == ['NetworkAccessError']


def test_torchrun_workers_are_guarded(tmp_path):
    script = tmp_path / 'reach_out.py'
    script.write_text(REACH_OUT)
    proc = run_tool('-m', 'torch.distributed.run', '--nproc_per_node=1',
                    '--master_addr=127.0.0.1', f'--master_port={free_port()}',
                    script)
    assert proc.stdout.split() == ['NetworkAccessError']


def _spawned(rank, out):
    (out / 'worker.txt').write_text(reach_out())


def test_spawned_workers_are_guarded(tmp_path):
    # A spawned worker starts a fresh interpreter: only its start-up
    # (sitecustomize) can install the guard there.
    mp.start_processes(_spawned, nprocs=1, start_method='spawn',
                       args=(tmp_path, ))
    assert (tmp_path / 'worker.txt').read_text() == 'NetworkAccessError'
