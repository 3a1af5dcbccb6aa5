"""Write audio-classifier model metadata (sample rate, channels, labels) into a copy of a YAMNet model, with the
Task Library's own metadata writer. Runs in the tflite-support virtual environment.

    write_metadata.py MODEL CLASS_MAP_CSV OUT_MODEL
"""

import csv
import sys
from pathlib import Path


def main(argv) -> int:
    if len(argv) != 3:
        print("usage: write_metadata.py MODEL CLASS_MAP_CSV OUT_MODEL", file=sys.stderr)
        return 2
    model, class_map, out = (Path(a) for a in argv)
    from tflite_support.metadata_writers import audio_classifier, writer_utils

    with open(class_map, newline="") as f:
        rows = list(csv.reader(f))
    names = [r[2] if len(r) >= 3 else r[-1] for r in rows[1:] if r]  # index,mid,display_name
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = out.with_suffix(".labels.txt")
    labels.write_text("\n".join(names) + "\n")
    writer = audio_classifier.MetadataWriter.create_for_inference(
        writer_utils.load_file(str(model)), 16000, 1, [str(labels)])
    writer_utils.save_file(writer.populate(), str(out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
