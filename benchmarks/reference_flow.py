"""The preprocessing flow of earlier papers' scripts (OGM-GE, PMR, RollingQ's own data scripts), the
baseline of benchmarks/preprocess.py. Written the way those scripts do it, not the way rq would:

- frames: OpenCV's `VideoCapture` reads (decodes and converts to BGR) EVERY frame at full size and
  `cv2.imwrite` keeps one per second as a JPEG in a per-clip folder;
- audio: an ffmpeg subprocess writes a 16 kHz mono wav, `librosa.load` reads it back, the waveform is
  tiled to the clip length as the official dataset code does, and
  `log(|librosa.stft(n_fft=512, hop_length=159, win_length=512, center=False)| + 1e-7)` is saved as .npy;
- a `multiprocessing.Pool` of N workers, one clip per task.

Run alone: `python benchmarks/reference_flow.py --raw DIR --out DIR --workers 2`."""
import argparse
import multiprocessing
import subprocess
import sys
from pathlib import Path

import cv2
import librosa
import numpy as np

from rq.pipeline.console import err, fail, progress
from rq.pipeline.ffmpeg import ffmpeg_binary

SAMPLE_RATE = 16000
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".flv", ".mov")


def extract_frames(video: Path, folder: Path) -> int:
    """Every frame decoded; the one at each whole second written as `folder/NNNNN.jpg`. Returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(video))
    per_second = max(1, round(capture.get(cv2.CAP_PROP_FPS) or 1))
    index = written = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % per_second == 0:
            cv2.imwrite(str(folder / f"{written:05d}.jpg"), frame)
            written += 1
        index += 1
    capture.release()
    if written == 0:
        raise RuntimeError("OpenCV read no frame")
    return written


def extract_spectrogram(video: Path, wav: Path, npy: Path, binary: str, audio_seconds: float) -> tuple[int, int]:
    """ffmpeg -> 16 kHz mono wav -> librosa.load -> tiled to length -> log-STFT saved as float32 .npy."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    npy.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([binary, "-nostdin", "-y", "-loglevel", "error", "-i", f"file:{video.absolute()}",
                           "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), str(wav)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ffmpeg: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    samples, _ = librosa.load(wav, sr=SAMPLE_RATE)
    length = int(audio_seconds * SAMPLE_RATE)
    samples = np.tile(samples, -(-length // max(1, samples.size)))[:length]
    spectrogram = librosa.stft(samples, n_fft=512, hop_length=159, win_length=512, center=False)
    spectrogram = np.log(np.abs(spectrogram) + 1e-7)
    np.save(npy, spectrogram)
    return spectrogram.shape


def process_clip(task: tuple[Path, Path, str, float]) -> tuple[str, str | None]:
    """(clip name, None) or (clip name, one-line reason): a bad clip is reported, the run goes on."""
    video, out, binary, audio_seconds = task
    try:
        extract_frames(video, out / "frames" / video.stem)
        extract_spectrogram(video, out / "audio" / f"{video.stem}.wav", out / "spec" / f"{video.stem}.npy",
                            binary, audio_seconds)
    except Exception as e:  # noqa: BLE001 - any failure of one clip is that clip's, reported below
        return video.name, " ".join(str(e).split()) or type(e).__name__
    return video.name, None


def run(raw: Path, out: Path, workers: int, audio_seconds: float = 10.0) -> dict[str, str]:
    """Every video under `raw` through the reference flow; returns {clip name: reason} of failed clips."""
    videos = sorted(p for p in raw.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    tasks = [(video, out, ffmpeg_binary(), audio_seconds) for video in videos]
    failures = {}
    with multiprocessing.Pool(workers) as pool:
        for name, reason in progress(pool.imap_unordered(process_clip, tasks), total=len(tasks),
                                     desc="reference", unit="clip"):
            if reason:
                failures[name] = reason
                err.print(f"reference flow skipped {name}: {reason}", markup=False)
    return failures


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        fail(f"{self.prog}: {message}")


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="reference_flow.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="Folder searched for videos (any depth).")
    parser.add_argument("--out", type=Path, required=True, help="Folder for frames/, audio/ and spec/.")
    parser.add_argument("--workers", type=int, default=2, help="Pool processes.")
    parser.add_argument("--audio-seconds", type=float, default=10.0, help="Waveform length before the STFT.")
    args = parser.parse_args(argv)
    if not args.raw.is_dir():
        fail(f"--raw {args.raw}: no such folder")
    if args.workers < 1 or args.audio_seconds <= 0:
        fail("--workers must be >= 1 and --audio-seconds > 0")
    failures = run(args.raw, args.out, args.workers, args.audio_seconds)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
