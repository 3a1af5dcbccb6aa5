"""The TFLite Task Library's AudioClassifier (tflite-support), one window at a time, in its own venv."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import main  # noqa: E402


def setup(args):
    from importlib.metadata import version

    from tflite_support.task import audio, core, processor

    options = audio.AudioClassifierOptions(
        base_options=core.BaseOptions(file_name=args.model, num_threads=args.threads),
        classification_options=processor.ClassificationOptions(max_results=1))
    classifier = audio.AudioClassifier.create_from_options(options)
    tensor = classifier.create_input_tensor_audio()

    def classify_window(window):
        tensor.load_from_array(window.reshape(-1, 1))  # [samples, channels]
        result = classifier.classify(tensor)
        return result.classifications[0].categories[0].category_name

    return classify_window, {"peer": "tflite-support", "version": version("tflite-support"),
                             "threads": args.threads}


if __name__ == "__main__":
    sys.exit(main(setup, "TFLite Task Library AudioClassifier, one 0.975 s window per call"))
