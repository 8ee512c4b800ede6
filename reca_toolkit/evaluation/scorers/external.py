"""An official scorer run as a command in its own environment.

GenEval's detector stack (mmdet 2.x, mmcv-full 1.7, torch 2.1) and DPG's
mPLUG (modelscope) cannot be installed next to this toolkit's torch. Their
faithful numbers come from running the official scripts where they are
installed; the metric writes the official folder layout, runs the command,
and parses what it writes.
"""
import os
import subprocess

from reca_toolkit.registry import SCORERS


@SCORERS.register_module()
class ExternalCommand:
    """A command line with ``{placeholders}`` the metric fills in.

    Args:
        command: argument list, e.g. ``['/envs/geneval/bin/python',
            'evaluation/evaluate_images.py', '{image_dir}', '--outfile',
            '{results_file}', '--model-path', '/weights/mask2former']``.
            No shell is involved.
        cwd: working directory of the command.
        env: extra environment variables.
        timeout: seconds before the command is killed.
    """

    def __init__(self, command, cwd=None, env=None, timeout=None):
        if isinstance(command, str) or not command:
            raise ValueError('ExternalCommand needs command= as a non-empty '
                             'list of arguments, not a shell string')
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(env or {})
        self.timeout = timeout

    def info(self):
        return dict(name='ExternalCommand', command=self.command,
                    cwd=self.cwd)

    def __call__(self, **fields):
        try:
            args = [str(part).format(**fields) for part in self.command]
        except KeyError as e:
            raise KeyError(f'ExternalCommand placeholder {e} is not one of '
                           f'{sorted(fields)}') from None
        proc = subprocess.run(args, cwd=self.cwd,
                              env={**os.environ, **self.env},
                              capture_output=True, text=True,
                              timeout=self.timeout)
        if proc.returncode != 0:
            tail = '\n'.join(proc.stderr.strip().splitlines()[-20:])
            raise RuntimeError(f'external scorer {args} exited with '
                               f'{proc.returncode}:\n{tail}')
        return proc.stdout
