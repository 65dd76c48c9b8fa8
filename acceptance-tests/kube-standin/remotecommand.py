"""`pods/exec` over WebSocket, as the API server proxies it to the kubelet: the subprotocols
`v5.channel.k8s.io` and `v4.channel.k8s.io` (kubectl 1.30+ and kube-rs speak them; the older
ones, whose error channel is plain text, are not served), one byte of channel before each message: 0 stdin, 1 stdout, 2 stderr, 3 the final
`Status` (v4+: a `NonZeroExitCode` Failure with the exit code as its `ExitCode` cause), 4 resize
(ignored, no TTY); v5's channel 255 closes a channel (stdin EOF). SPDY is not served: a client
that asks for it gets a 400, as a server without SPDY would answer it."""

import base64
import hashlib
import json
import logging
import os
import struct
import subprocess
import threading

log = logging.getLogger("kube-standin")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class WebSocket:
    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.wlock = threading.Lock()

    def send(self, payload, opcode=2):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack(">H", n)
        else:
            header += bytes([127]) + struct.pack(">Q", n)
        with self.wlock:
            self.wfile.write(header + payload)
            self.wfile.flush()

    def recv(self):
        """(opcode, payload) of the next whole message, or (None, b"") when the peer is gone."""
        message, first_opcode = b"", None
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return None, b""
            fin, opcode = head[0] & 0x80, head[0] & 0x0F
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytearray(self.rfile.read(n))
            for i in range(len(data)):
                data[i] ^= mask[i % 4]
            if opcode == 9:  # ping
                self.send(bytes(data), 10)
                continue
            if opcode == 10:
                continue
            if opcode == 8:
                return 8, bytes(data)
            first_opcode = first_opcode if opcode == 0 else opcode
            message += bytes(data)
            if fin:
                return first_opcode, message


def accept(handler, protocols_header):
    """Completes the upgrade; returns the subprotocol chosen, or None (the caller answers 400)."""
    offered = [p.strip() for p in (protocols_header or "").split(",") if p.strip()]
    chosen = next((p for p in offered if p in PROTOCOLS), None)
    key = handler.headers.get("Sec-WebSocket-Key")
    if chosen is None or not key or "websocket" not in (handler.headers.get("Upgrade") or "").lower():
        return None
    accept_key = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept_key)
    handler.send_header("Sec-WebSocket-Protocol", chosen)
    handler.end_headers()
    handler.wfile.flush()
    handler.status_sent = 101
    handler.close_connection = True
    return chosen


def exit_status(code, command):
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command [%s], exit code %d"
                       % (" ".join(command), code),
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def serve_exec(handler, argv, command, want):
    """Runs argv (already entering the container) and relays its streams over the upgraded
    connection. `want`: which of stdin, stdout, stderr the client asked for."""
    protocol = accept(handler, handler.headers.get("Sec-WebSocket-Protocol"))
    if protocol is None:
        return False
    ws = WebSocket(handler.rfile, handler.wfile)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if want["stdin"] else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)

    def pump(stream, channel, enabled):
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            if enabled:
                try:
                    ws.send(bytes([channel]) + chunk)
                except OSError:
                    break
    pumps = [threading.Thread(target=pump, args=(proc.stdout, STDOUT, want["stdout"]), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, STDERR, want["stderr"]), daemon=True)]
    for t in pumps:
        t.start()

    def reader():
        while True:
            try:
                opcode, msg = ws.recv()
            except (OSError, ValueError, struct.error):
                opcode, msg = None, b""
            if opcode == 8:
                try:
                    ws.send(msg[:2], 8)  # the closing handshake's answer
                except OSError:
                    pass
            if opcode in (None, 8):
                break
            if not msg:
                continue
            channel, data = msg[0], msg[1:]
            if channel == STDIN and proc.stdin is not None and data:
                try:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                except OSError:
                    pass
            elif channel == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                break  # nothing more to read: the socket is then only written
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
    # One TLS connection must not be read and written at once from two threads (an OpenSSL
    # object is not thread-safe: output was seen lost). So the client is read only while it
    # sends stdin, until it closes it; a command without stdin never reads the socket.
    if want["stdin"]:
        threading.Thread(target=reader, daemon=True).start()
    code = proc.wait()
    # Until every holder of the output pipes is gone (a background child keeps them open, and a
    # real exec waits for it as well).
    for t in pumps:
        t.join()
    try:
        ws.send(bytes([ERROR]) + json.dumps(exit_status(code if code >= 0 else 128 - code, command)).encode())
        ws.send(struct.pack(">H", 1000), 8)
    except OSError:
        pass
    return True
