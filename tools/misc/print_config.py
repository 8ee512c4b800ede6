"""Print a config after inheritance and overrides.

    python tools/misc/print_config.py CONFIG [--cfg-options key=value ...]
"""
import argparse
import sys
from pathlib import Path

from mmengine.config import DictAction

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    from reca_toolkit.engine import load_config
    print(load_config(args.config, args.cfg_options,
                      check_resources=False).pretty_text)


if __name__ == '__main__':
    main()
