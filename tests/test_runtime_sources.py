"""Sources and the predict loop: bags (ROS 1 and 2), folders, video, camera, the CLI."""

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cifrenet_edge import Segmenter
from cifrenet_edge.errors import FrameError, SourceError
from cifrenet_edge.runtime.predict_files import output_topics, run_predict
from cifrenet_edge.runtime.rosimg import image_fields, image_to_bgr
from cifrenet_edge.runtime.sources import Frame, LatestFrameGrabber, Source, open_source

TOPIC = "/camera/image_raw"
ENCODINGS = ("bgr8", "rgb8", "mono8")


def _frames(real_images_dir, size=(160, 96)):
    return [
        cv2.resize(cv2.imread(str(p)), size) for p in sorted(Path(real_images_dir).glob("*.jpg"))
    ]


def _as_encoding(bgr, encoding):
    if encoding == "rgb8":
        return np.ascontiguousarray(bgr[..., ::-1])
    if encoding == "mono8":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return bgr


def _expected_input(bgr, encoding):
    """What the runtime should see after decoding a message of this encoding."""
    if encoding == "mono8":
        return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return bgr


def make_bag(
    path,
    ros2,
    frames,
    topic=TOPIC,
    compressed=False,
    extra_image_topic=None,
    bad=(),
    storage="sqlite3",
):
    """A bag with an image topic (cycling bgr8/rgb8/mono8, or JPEG), a string topic, and
    optionally a second image topic; indices in ``bad`` get an inconsistent Image message.
    ROS 2 bags in ``storage`` (sqlite3 or mcap)."""
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as Writer2
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE if ros2 else Stores.ROS1_NOETIC)
    types = store.types
    serialize = store.serialize_cdr if ros2 else store.serialize_ros1
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer2(path, version=9, storage_plugin=plugin) if ros2 else Writer1(path)
    stamps = []
    with writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        chat = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        other = None
        if extra_image_topic:
            other = writer.add_connection(extra_image_topic, msgtype, typestore=store)
        for i, bgr in enumerate(frames):
            stamp = types["builtin_interfaces/msg/Time"](sec=1000 + i, nanosec=1234 * i)
            extra = {} if ros2 else {"seq": 40 + i}
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="cam_optical", **extra)
            if compressed:
                data = np.frombuffer(cv2.imencode(".png", bgr)[1].tobytes(), np.uint8)
                msg = types[msgtype](header=header, format="png", data=data)
            else:
                fields = image_fields(_as_encoding(bgr, ENCODINGS[i % 3]))
                fields["encoding"] = ENCODINGS[i % 3]
                if i in bad:
                    fields["height"] = fields["height"] * 2  # claims more rows than it holds
                msg = types[msgtype](header=header, **fields)
            t = (2000 + i) * 10**9  # bag time differs from header time on purpose
            stamps.append(t)
            writer.write(conn, t, serialize(msg, msgtype))
            writer.write(
                chat,
                t + 1,
                serialize(types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"),
            )
            if other is not None:
                writer.write(other, t + 2, serialize(msg, msgtype))
    return stamps


def read_bag(path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = {}
    with AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
        types = {c.topic: c.msgtype for c in reader.connections}
    return out, types


@pytest.fixture(scope="module")
def seg(runtime_content_onnx):
    s = Segmenter.open(runtime_content_onnx, backend="onnxruntime", threads=1)
    yield s
    s.close()


def check_bag_files(out, ros2, storage, topics, count, stamps):
    """The files a segmented bag left in ``out``: named as ``ros2 bag record`` names them
    (``NAME_0.db3`` / ``NAME_0.mcap``, listed so in metadata.yaml), no temporary name left
    anywhere, not even inside the files; metadata.yaml's counts and times as written."""
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    if not ros2:
        assert files == ["in_segmented.bag"], files
    else:
        from rosbags.rosbag2 import Reader
        from ruamel.yaml import YAML

        storage_file = "in_segmented_0." + {"sqlite3": "db3", "mcap": "mcap"}[storage]
        folder = ["in_segmented", "in_segmented/metadata.yaml", f"in_segmented/{storage_file}"]
        assert files == sorted(folder), files
        info = YAML(typ="safe").load((out / "in_segmented" / "metadata.yaml").read_text())
        info = info["rosbag2_bagfile_information"]
        assert info["storage_identifier"] == storage
        assert info["relative_file_paths"] == [storage_file]
        assert [f["path"] for f in info["files"]] == [storage_file]
        with Reader(out / "in_segmented") as reader:  # rosbag2's own reading of the folder
            assert {c.topic: c.msgcount for c in reader.connections} == {t: count for t in topics}
            assert reader.message_count == count * len(topics)
            assert (reader.start_time, reader.end_time) == (stamps[0], stamps[-1] + 1)
    for path in out.rglob("*"):
        assert "partial" not in path.name and not path.name.startswith("."), path
        if path.is_file():
            assert b".partial" not in path.read_bytes(), path  # the metadata copy inside too


@pytest.mark.parametrize(
    ("ros2", "storage"),
    [(False, None), (True, "sqlite3"), (True, "mcap")],
    ids=["ros1", "ros2-sqlite3", "ros2-mcap"],
)
def test_bag_round_trip(tmp_path, real_images_dir, seg, ros2, storage):
    frames = _frames(real_images_dir) + _frames(real_images_dir, (120, 80))[:1]
    bag = tmp_path / ("in" if ros2 else "in.bag")
    stamps = make_bag(bag, ros2, frames, storage=storage)
    summary = run_predict(seg, str(bag), tmp_path / "out")
    assert (summary.kind, summary.written, summary.skipped) == ("bag", len(frames), 0)
    result = Path(summary.outputs[0])
    assert result.name == ("in_segmented" if ros2 else "in_segmented.bag")
    topics = output_topics(TOPIC)
    check_bag_files(
        tmp_path / "out", ros2, storage, [topics["mask"], topics["overlay"]], len(frames), stamps
    )
    messages, types = read_bag(result)
    assert set(messages) == {topics["mask"], topics["overlay"]}
    assert set(types.values()) == {"sensor_msgs/msg/Image"}
    assert all(len(messages[t]) == len(frames) for t in messages)
    for i, bgr in enumerate(frames):
        (t_mask, mask_msg), (t_view, view_msg) = (
            messages[topics["mask"]][i],
            messages[topics["overlay"]][i],
        )
        assert t_mask == t_view == stamps[i]  # the original bag timestamps
        for msg in (mask_msg, view_msg):
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1000 + i, 1234 * i)
            assert msg.header.frame_id == "cam_optical"
        if not ros2:
            assert mask_msg.header.seq == 40 + i
        assert (mask_msg.encoding, view_msg.encoding) == ("mono8", "bgr8")
        image = _expected_input(bgr, ENCODINGS[i % 3])
        expected = seg.predict(image)
        assert np.array_equal(image_to_bgr(mask_msg)[..., 0], expected)
        assert np.array_equal(image_to_bgr(view_msg), seg.overlay(image, expected, 0.5))


def test_compressed_bag_and_only_masks(tmp_path, real_images_dir, seg):
    frames = _frames(real_images_dir)[:3]
    make_bag(tmp_path / "c", True, frames, compressed=True)
    summary = run_predict(seg, str(tmp_path / "c"), tmp_path / "out", save_mask=True)
    messages, _ = read_bag(summary.outputs[0])
    assert list(messages) == [output_topics(TOPIC)["mask"]]
    for (_, msg), bgr in zip(messages[output_topics(TOPIC)["mask"]], frames):
        assert np.array_equal(image_to_bgr(msg)[..., 0], seg.predict(bgr))


def test_bag_topic_errors(tmp_path, real_images_dir):
    frames = _frames(real_images_dir)[:2]
    make_bag(tmp_path / "a.bag", False, frames)
    with pytest.raises(SourceError, match="image topics are /camera/image_raw") as info:
        open_source(str(tmp_path / "a.bag"), topic="/camera/rgb")
    assert "/chatter" in str(info.value) and "--topic" in str(info.value)
    make_bag(tmp_path / "two", True, frames, extra_image_topic="/camera2/image_raw")
    with pytest.raises(SourceError, match="2 image topics"):
        open_source(str(tmp_path / "two"))
    with open_source(str(tmp_path / "two"), topic="/camera2/image_raw") as src:
        assert src.total == 2 and src.topic == "/camera2/image_raw"
    with pytest.raises(SourceError, match="only applies to bags"):
        open_source(str(real_images_dir), topic=TOPIC)


def test_bad_frames_are_skipped_and_counted(tmp_path, real_images_dir, seg):
    frames = _frames(real_images_dir)
    make_bag(tmp_path / "b.bag", False, frames, bad=(1, 3))
    summary = run_predict(seg, str(tmp_path / "b.bag"), tmp_path / "out")
    assert (summary.frames, summary.written, summary.skipped) == (5, 3, 2)
    assert "inconsistent" in next(iter(summary.skip_reasons))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(frames[:3]):
        cv2.imwrite(str(folder / f"{i}.png"), f)
    (folder / "9_truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    summary = run_predict(seg, str(folder), tmp_path / "out2", save_overlay=True)
    assert (summary.written, summary.skipped) == (3, 1)
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == [
        "0_overlay.jpg",
        "1_overlay.jpg",
        "2_overlay.jpg",
    ]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(SourceError, match="no frame of"):
        run_predict(seg, str(tmp_path / "junk"), tmp_path / "out3")


def test_unsupported_encoding_stops_the_loop(tmp_path, seg):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    depth = np.zeros((4, 6), np.uint16)
    with Writer(tmp_path / "depth", version=9) as writer:
        conn = writer.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=store)
        header = types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="d"
        )
        msg = types["sensor_msgs/msg/Image"](
            header=header,
            height=4,
            width=6,
            encoding="16UC1",
            is_bigendian=0,
            step=12,
            data=depth.view(np.uint8).reshape(-1),
        )
        writer.write(conn, 1, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(SourceError, match="16UC1"):
        run_predict(seg, str(tmp_path / "depth"), tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # nothing half-written


def test_image_messages_with_padded_rows():
    bgr = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)

    class Msg:
        encoding, height, width, step = "rgb8", 5, 7, 7 * 3 + 11
        data = np.zeros((5, 7 * 3 + 11), np.uint8)

    Msg.data[:, :21] = bgr[..., ::-1].reshape(5, 21)
    Msg.data = Msg.data.reshape(-1)
    assert np.array_equal(image_to_bgr(Msg), bgr)
    Msg.height = 50
    with pytest.raises(FrameError, match="inconsistent"):
        image_to_bgr(Msg)


def test_video_file(tmp_path, real_images_dir, seg):
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 96))
    frames = _frames(real_images_dir) * 2
    for f in frames:
        writer.write(f)
    writer.release()
    summary = run_predict(seg, str(video), tmp_path / "out")
    assert summary.written == len(frames) and summary.kind == "video"
    masks = sorted((tmp_path / "out" / "drive_mask").glob("*.png"))
    assert len(masks) == len(frames)
    assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (96, 160)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "drive_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    cap.release()


class NumberedCamera:
    """A stand-in for cv2.VideoCapture: frames carry their number, 1 ms apart."""

    def __init__(self, fail_after=None):
        self.n = 0
        self.fail_after = fail_after
        self.released = False

    def read(self):
        time.sleep(0.001)
        if self.fail_after is not None and self.n >= self.fail_after:
            return False, None
        self.n += 1
        return True, np.full((2, 2, 3), self.n % 256, np.uint8) + np.zeros((2, 2, 3), np.uint8)

    def release(self):
        self.released = True


def test_camera_grabber_keeps_only_the_newest_frame():
    camera = NumberedCamera()
    grabber = LatestFrameGrabber(camera)
    try:
        seen = []
        for _ in range(5):
            seq, _ = grabber.read(timeout=2.0)
            produced = camera.n
            assert seq >= produced - 2  # the newest (the grabber may be mid-read of the next)
            seen.append(seq)
            time.sleep(0.03)  # a slow consumer: ~30 frames arrive meanwhile
        assert seen == sorted(set(seen))  # never the same frame twice, never older
        assert grabber.dropped > 50  # stale frames were dropped, not queued
    finally:
        grabber.close()
    assert camera.released
    dead = LatestFrameGrabber(NumberedCamera(fail_after=3), max_failures=5, retry_s=0.001)
    with pytest.raises(SourceError, match="no frame"):
        for _ in range(10):
            dead.read(timeout=2.0)
    dead.close()


class InterruptedSource(Source):
    """Yields frames, then the user presses Ctrl-C."""

    kind = "camera"

    def __init__(self, frames):
        super().__init__("camera:9")
        self.frames = frames

    def __iter__(self):
        for i, f in enumerate(self.frames):
            yield Frame(f, i, f"{i:06d}")
        raise KeyboardInterrupt


def test_ctrl_c_finalises_outputs(tmp_path, real_images_dir, seg):
    frames = _frames(real_images_dir)[:3]
    summary = run_predict(seg, InterruptedSource(frames), tmp_path, save_mask=True)
    assert summary.interrupted and summary.written == 3
    assert len(list((tmp_path / "camera9_mask").glob("*.png"))) == 3


def test_cli_predict(tmp_path, real_images_dir, runtime_content_onnx):
    from typer.testing import CliRunner

    from cifrenet_edge.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "predict",
            str(runtime_content_onnx),
            "--source",
            str(real_images_dir),
            "-o",
            str(out),
            "--save-mask",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 frames segmented" in result.output
    assert len(list(out.glob("*_mask.png"))) == 5
    make_bag(tmp_path / "a.bag", False, _frames(real_images_dir)[:1])
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifrenet_edge",
            "predict",
            str(runtime_content_onnx),
            "--source",
            str(tmp_path / "a.bag"),
            "--topic",
            "/nope",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: bag ")
    assert "Traceback" not in proc.stderr


def test_concurrent_sources_share_one_segmenter(tmp_path, real_images_dir, seg):
    """Two loops (two camera callbacks) on one Segmenter, as a robot with two cameras does."""
    frames = _frames(real_images_dir)
    results = {}

    def loop(name):
        results[name] = run_predict(seg, InterruptedSource(frames), tmp_path / name, save_mask=True)

    threads = [threading.Thread(target=loop, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("left", "right"):
        masks = sorted((tmp_path / name / "camera9_mask").glob("*.png"))
        assert [cv2.imread(str(m), cv2.IMREAD_UNCHANGED).tolist() for m in masks] == [
            seg.predict(f).tolist() for f in frames
        ]


def test_segment_message_is_what_the_ros2_node_does(real_images_dir, seg):
    """The node's callback logic on real sensor_msgs dataclasses (rosbags), no ROS needed."""
    from rosbags.typesys import Stores, get_typestore

    from cifrenet_edge.runtime.rosimg import segment_message

    types = get_typestore(Stores.ROS2_HUMBLE).types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam"
    )
    bgr = _frames(real_images_dir)[2]
    raw = types["sensor_msgs/msg/Image"](
        header=header, **dict(image_fields(bgr[..., ::-1].copy()), encoding="rgb8")
    )
    jpeg = types["sensor_msgs/msg/CompressedImage"](
        header=header,
        format="png",
        data=np.frombuffer(cv2.imencode(".png", bgr)[1].tobytes(), np.uint8),
    )
    expected = seg.predict(bgr)
    for msg in (raw, jpeg):
        mask, overlay = segment_message(seg, msg, overlay=True, alpha=0.4)
        assert (mask["encoding"], overlay["encoding"]) == ("mono8", "bgr8")
        assert np.array_equal(mask["data"].reshape(mask["height"], mask["width"]), expected)
        assert overlay["step"] == 3 * overlay["width"]
    assert segment_message(seg, raw, overlay=False)[1] is None
    broken = types["sensor_msgs/msg/CompressedImage"](
        header=header, format="jpeg", data=np.zeros(9, np.uint8)
    )
    with pytest.raises(FrameError):
        segment_message(seg, broken)


def test_examples(tmp_path, real_images_dir, runtime_content_onnx):
    import ast
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    ast.parse((root / "examples" / "ros2_segmentation_node.py").read_text())  # no ROS 2 here
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "examples" / "camera_loop.py"),
            str(runtime_content_onnx),
            str(real_images_dir),
            "--headless",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len([ln for ln in proc.stdout.splitlines() if "FPS onnxruntime/cpu" in ln]) == 5


def test_camera_lost_mid_run_keeps_what_was_recorded(tmp_path, seg):
    from cifrenet_edge.runtime.sources import Camera

    class Unplugged(NumberedCamera):
        def read(self):
            ok, frame = super().read()
            return ok, (None if frame is None else np.full((48, 64, 3), 80, np.uint8))

    camera = Camera("camera:7", capture=Unplugged(fail_after=4))
    camera.grabber.max_failures, camera.grabber.retry_s = 5, 0.001
    summary = run_predict(seg, camera, tmp_path, save_mask=True)
    assert 1 <= summary.written <= 4 and "no frame" in summary.ended_by
    assert len(list((tmp_path / "camera7_mask").glob("*.png"))) == summary.written
    with pytest.raises(SourceError, match="no frame"):  # dead from the start: an error
        dead = Camera("camera:8", capture=Unplugged(fail_after=0))
        dead.grabber.max_failures = 3
        run_predict(seg, dead, tmp_path / "dead")
