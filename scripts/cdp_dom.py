#!/usr/bin/env python3
"""A minimal Chrome DevTools Protocol client over a raw WebSocket, standard library only, for a page open in a headless
Chromium started with --remote-debugging-port. As a module: Page(port, url_prefix) with evaluate(js), wait(js, timeout)
and screenshot(path) (scripts/check-chat-page.sh drives the chat page with it). As a command: waits until the page sets
<body data-done="true"> (or "error"), then prints the page's DOM.
Usage: cdp_dom.py DEBUG_PORT URL_PREFIX TIMEOUT_SECONDS"""
import base64, json, os, socket, struct, sys, time, urllib.request

def page_ws(port, prefix):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            for target in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list")):
                if target.get("type") == "page" and target.get("url", "").startswith(prefix):
                    return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("no page found for " + prefix)

class WebSocket:
    def __init__(self, url):
        host, path = url[len("ws://"):].split("/", 1)
        h, p = host.split(":")
        self.sock = socket.create_connection((h, int(p)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        if b" 101 " not in response.split(b"\r\n")[0]:
            sys.exit("websocket upgrade refused: " + response.decode(errors="replace"))
        self.next_id = 0

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk: raise EOFError
            data += chunk
        return data

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(payload)
        header += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126: n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127: n = struct.unpack(">Q", self._exact(8))[0]
            message += self._exact(n)
            if b0 & 0x80: return message.decode()

    def call(self, method, **params):
        self.next_id += 1
        self.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.receive())
            if reply.get("id") == self.next_id: return reply

class Page:
    """The first page whose URL starts with url_prefix."""
    def __init__(self, port, url_prefix):
        self.ws = WebSocket(page_ws(port, url_prefix))

    def evaluate(self, expression):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        reply = self.ws.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        result = reply["result"]
        if "exceptionDetails" in result: raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, timeout, what=None):
        """Waits until expression is truthy; fails with what (or the expression) after timeout seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.evaluate(expression): return
            except RuntimeError:
                pass  # not yet evaluable (the page is still loading)
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what or expression}")

    def screenshot(self, path, width=1000, height=900):
        """Writes a PNG of the page (the viewport set to width x height) to path."""
        self.ws.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        data = self.ws.call("Page.captureScreenshot", format="png")["result"]["data"]
        with open(path, "wb") as f: f.write(base64.b64decode(data))

if __name__ == "__main__":
    port, prefix, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    page = Page(port, prefix)
    deadline = time.time() + timeout
    while time.time() < deadline and page.evaluate("document.body && document.body.dataset.done") not in ("true", "error"):
        time.sleep(0.5)
    print(page.evaluate("document.documentElement.outerHTML"))
