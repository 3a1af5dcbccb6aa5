"""MediaPipe Tasks' AudioClassifier on one window at a time (runs in MediaPipe's own virtual environment)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import RATE_HZ, main  # noqa: E402


def setup(args):
    from importlib.metadata import version

    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import audio as mp_audio
    from mediapipe.tasks.python.components.containers.audio_data import AudioData

    options = mp_audio.AudioClassifierOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=args.model), max_results=1,
        running_mode=mp_audio.RunningMode.AUDIO_CLIPS)
    classifier = mp_audio.AudioClassifier.create_from_options(options)

    def classify_window(window):
        results = classifier.classify(AudioData.create_from_array(window, RATE_HZ))
        return results[0].classifications[0].categories[0].category_name

    # MediaPipe's BaseOptions has no thread count: its TFLite inference runs with the library's default
    return classify_window, {"peer": "mediapipe", "version": version("mediapipe"), "threads": "library default"}


if __name__ == "__main__":
    sys.exit(main(setup, "MediaPipe AudioClassifier, one 0.975 s window per call"))
