"""A password-protected RTSP camera made from a video file, for the integration tests.

Run by `scripts/rtsp-camera serve` with Debian's python3, because python3-gi installs the
GStreamer bindings there and nowhere else. The password comes from $RTSP_CAMERA_PASSWORD so
that it is not on this process's command line; nothing here prints it.

The file's H.264 access units go to the clients as they are. Re-encoding would need the
decoder and x264 plugins on top (more packages to install) and about eight times the CPU of
this, on a two-core machine that the pipeline under test needs. The clip plays in a loop with
timestamps that keep running, so that to a client it looks like one endless live stream, as
an IP camera's does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

CREDENTIAL_VARIABLE = "RTSP_CAMERA_PASSWORD"
INSTALL_HINT = "run `scripts/rtsp-camera install`"
NEEDED_ELEMENTS = ("filesrc", "qtdemux", "queue", "appsink", "appsrc", "rtph264pay")

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:
    sys.exit(f"rtsp: the GStreamer RTSP server is not installed ({exc}); {INSTALL_HINT}")


def say(message: str) -> None:
    print(f"rtsp: {message}", flush=True)


def check_elements() -> None:
    missing = [name for name in NEEDED_ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        sys.exit(f"rtsp: GStreamer elements missing: {', '.join(missing)}; {INSTALL_HINT}")


class Reader:
    """The file's video access units, over and over, with timestamps that keep increasing."""

    _PULL_TIMEOUT = 10 * Gst.SECOND
    _PULL_STEP = Gst.SECOND // 5

    def __init__(self, path: str) -> None:
        # Linked by name rather than written into a launch line, so that no file name can
        # break the pipeline description. qtdemux reads MP4 and MOV.
        self._pipeline = Gst.Pipeline.new("reader")
        src = Gst.ElementFactory.make("filesrc")
        demux = Gst.ElementFactory.make("qtdemux")
        queue = Gst.ElementFactory.make("queue")
        self._sink = Gst.ElementFactory.make("appsink")
        src.set_property("location", path)
        self._path = path
        # Bounded, so that reading ahead never holds more than a moment of video in memory.
        self._sink.set_property("sync", False)
        self._sink.set_property("max-buffers", 16)
        self._sink.set_property("enable-last-sample", False)
        for element in (src, demux, queue, self._sink):
            self._pipeline.add(element)
        src.link(demux)
        queue.link(self._sink)
        self._linked = False
        demux.connect("pad-added", self._on_pad, queue)
        self._offset = 0  # added to every timestamp of the current pass through the file
        self._pass_end = 0  # where the current pass ends, on the continuing clock
        self._pipeline.set_state(Gst.State.PLAYING)

    def _on_pad(self, _demux: Any, pad: Any, queue: Any) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        if not self._linked and caps.get_structure(0).get_name().startswith("video/"):
            self._linked = pad.link(queue.get_static_pad("sink")) == Gst.PadLinkReturn.OK

    def _error(self) -> str | None:
        message = self._pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        if message is None:
            return None
        err, _debug = message.parse_error()
        return str(err.message)

    def _pull(self, action: str) -> Any:
        # In short steps: a broken file posts an error and then leaves the sink waiting, and
        # the person who passed it should hear about it at once, not after the timeout.
        waited = 0
        while waited < self._PULL_TIMEOUT:
            sample = self._sink.emit(action, self._PULL_STEP)
            if sample is not None or self._sink.get_property("eos"):
                return sample
            error = self._error()
            if error is not None:
                raise RuntimeError(error)
            waited += self._PULL_STEP
        return None

    def caps(self) -> Any:
        sample = self._pull("try-pull-preroll")
        if sample is None:
            raise RuntimeError("no video track found")
        return sample.get_caps()

    def next_buffer(self) -> Any:
        """The next access unit, or None when the file cannot be read (any more)."""
        try:
            sample = self._pull("try-pull-sample")
            if sample is None:
                if not self._sink.get_property("eos") or self._pass_end == self._offset:
                    return None  # a stall, or a file without a single frame
                self._offset = self._pass_end
                if not self._pipeline.seek_simple(
                    Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
                ):
                    return None
                sample = self._pull("try-pull-sample")
                if sample is None:
                    return None
        except RuntimeError as exc:
            say(f"reading {self._path}: {exc}")
            return None
        # A shallow copy: the bytes are shared, only the timestamps are ours to change.
        buffer = sample.get_buffer().copy()
        duration = buffer.duration if buffer.duration != Gst.CLOCK_TIME_NONE else 0
        # Decoding time runs without gaps from one frame to the next, so the end of the last
        # frame in decoding order is where the next pass begins.
        end_base = buffer.dts if buffer.dts != Gst.CLOCK_TIME_NONE else buffer.pts
        if end_base != Gst.CLOCK_TIME_NONE:
            self._pass_end = max(self._pass_end, self._offset + end_base + duration)
        if buffer.pts != Gst.CLOCK_TIME_NONE:
            buffer.pts += self._offset
        if buffer.dts != Gst.CLOCK_TIME_NONE:
            buffer.dts += self._offset
        return buffer

    def close(self) -> None:
        self._pipeline.set_state(Gst.State.NULL)


def probe(path: str) -> Any:
    """The caps of the file's video, or exit with a reason a person can act on."""
    if not os.access(path, os.R_OK):
        sys.exit(f"rtsp: cannot read {path}")
    reader = Reader(path)
    try:
        caps = reader.caps()
    except RuntimeError as exc:
        sys.exit(f"rtsp: {path}: {exc} (need H.264 video in an MP4 or MOV file)")
    finally:
        reader.close()
    structure = caps.get_structure(0)
    if structure.get_name() != "video/x-h264":
        sys.exit(
            f"rtsp: {path}: the video is {structure.get_name()}; this server sends H.264 "
            "without re-encoding, so it needs an H.264 file"
        )
    return caps


class LoopingFileFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    """One stream shared by all clients, like a camera's; after the last client has gone,
    the next one starts it again from the beginning of the file."""

    def __init__(self, path: str, caps: Any) -> None:
        super().__init__()
        self._path = path
        self._caps = caps
        # Parameter sets before every key frame, so that a client joining a shared stream
        # mid-way can start decoding at the next key frame.
        self.set_launch(
            "( appsrc name=camera format=time is-live=false"
            " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.set_shared(True)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory: Any, media: Any) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("camera")
        appsrc.set_property("caps", self._caps)
        reader = Reader(self._path)
        lock = threading.Lock()

        def on_need_data(src: Any, _length: int) -> None:
            with lock:
                buffer = reader.next_buffer()
            if buffer is None:
                say(f"reading {self._path} failed; ending the stream")
                src.emit("end-of-stream")
            else:
                src.emit("push-buffer", buffer)

        appsrc.connect("need-data", on_need_data)
        # Pacing comes from the server's RTP sinks, which play the buffers against the
        # pipeline clock: the reader never runs ahead of real time by more than its queue.
        media.connect("unprepared", lambda _media: reader.close())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="check the installation and exit")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--path", help="mount point, e.g. clip for rtsp://HOST:PORT/clip")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("file", nargs="?")
    args = parser.parse_args()

    Gst.init(None)
    check_elements()
    if args.check:
        say(f"GStreamer {Gst.version_string().split()[-1]} with the RTSP server is ready")
        return 0
    password = os.environ.get(CREDENTIAL_VARIABLE, "")
    if not (args.port and args.user and args.path and args.file and password):
        parser.error(f"need --port, --user, --path, FILE and ${CREDENTIAL_VARIABLE}")
    mount = "/" + args.path.strip("/")
    caps = probe(args.file)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))

    # Cameras answer 401 with a Basic challenge and the clients (FFmpeg's included) retry
    # with the credentials from the URL; a request without them gets no stream.
    role = "camera-reader"
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    auth = GstRtspServer.RTSPAuth()
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    permissions.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    factory = LoopingFileFactory(args.file, caps)
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory(mount, factory)

    def on_client(_server: Any, client: Any) -> None:
        ip = client.get_connection().get_ip()
        say(f"client {ip} connected")
        client.connect("closed", lambda _client: say(f"client {ip} disconnected"))

    server.connect("client-connected", on_client)

    if server.attach(None) == 0:
        sys.exit(f"rtsp: cannot listen on {args.host}:{args.port} (port in use?)")
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    # The listening socket exists once attach() returned, so clients can connect from now on.
    say(f"serving {args.file} on rtsp://{args.host}:{args.port}{mount} (user {args.user})")
    loop.run()
    say("stopped")
    # Media pipelines still stream from their own threads; tearing them down one by one buys
    # nothing for a test camera, and the kernel closes every socket on exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
