"""Export a trained checkpoint in the model's Hugging Face layout.

    python tools/model_converters/export_hf.py CONFIG CHECKPOINT OUT_DIR

For Janus-Pro the folder loads with
``JanusForConditionalGeneration.from_pretrained(OUT_DIR)`` and carries the
source folder's processor and tokenizer files.
"""
import argparse
import os
import sys
from pathlib import Path

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('out_dir', help='new, empty output folder')
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine.inference import load_model
    model, _ = load_model(args.config, args.checkpoint)
    print(model.umm.save_pretrained(args.out_dir))


if __name__ == '__main__':
    main()
