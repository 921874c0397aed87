"""A Google Cloud Storage XML API emulator for Brisk's GCS tests (`cargo xtask cloud`).

No third-party GCS emulator installable here speaks the XML API that `object_store`'s GCS
client uses (gcp-storage-emulator answers 501 to a listing; fake-gcs-server is a Go binary on
no registry we can reach), so this one models the part of it that client sends, after
Google's reference (https://cloud.google.com/storage/docs/xml-api/overview):

- `GET /<bucket>?list-type=2` with `prefix`, `delimiter`, `start-after`,
  `continuation-token` and `max-keys` (paginated: at most `max-keys`, default 1000, entries
  per page, `NextContinuationToken` when truncated);
- `GET`/`HEAD /<bucket>/<object>` with single `Range` requests (206, `Content-Range`; 416
  when unsatisfiable), `ETag`, `Last-Modified`, `x-goog-generation`;
- `PUT /<bucket>/<object>` (upload; or copy with `x-goog-copy-source`), honouring
  `x-goog-if-generation-match` (0: only if absent; 412 otherwise);
- `DELETE /<bucket>/<object>` (204; 404 when absent, as GCS answers).

Anything else (multipart uploads, signed URLs, other buckets) is refused with an XML error, so
a test that needs more fails loudly instead of passing against a lenient fake. Objects live in
memory. Every request is logged to stderr (`xtask` checks the tests reached the server).

Usage: python3 gcs_xml_emulator.py --port 4443 --bucket brisk-test
"""

import argparse
import email.utils
import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

LOCK = threading.Lock()
BUCKETS = {}  # bucket -> {name: (data, generation, mtime)}
GENERATION = [int(time.time() * 1e6)]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def etag(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s %s\n" % (self.command, unquote(self.path), args[1] if len(args) > 1 else ""))

    # ---- helpers -------------------------------------------------------------------------

    def reply(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def error(self, status, code, message, head=False):
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>"
            % (code, escape(message))
        ).encode()
        self.reply(status, body, {"Content-Type": "application/xml"}, head)

    def target(self):
        """(bucket, object name or None, query) of the request, or None after an error."""
        parts = urlsplit(self.path)
        path = parts.path.lstrip("/")
        bucket, _, name = path.partition("/")
        bucket = unquote(bucket)
        if bucket not in BUCKETS:
            self.error(404, "NoSuchBucket", "The specified bucket does not exist.")
            return None
        return bucket, (unquote(name) if name else None), parse_qs(parts.query)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def precondition(self, objects, name):
        """False (after a 412) when `x-goog-if-generation-match` does not hold."""
        want = self.headers.get("x-goog-if-generation-match")
        if want is None:
            return True
        have = objects[name][1] if name in objects else 0
        if int(want) != have:
            self.error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
            return False
        return True

    # ---- verbs ---------------------------------------------------------------------------

    def do_GET(self, head=False):
        t = self.target()
        if t is None:
            return
        bucket, name, query = t
        if name is None:
            if head:
                return self.reply(200, head=True)
            return self.list(bucket, query)
        with LOCK:
            entry = BUCKETS[bucket].get(name)
        if entry is None:
            return self.error(404, "NoSuchKey", "The specified key does not exist.", head)
        data, generation, mtime = entry
        headers = {
            "ETag": etag(data),
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
            "x-goog-generation": str(generation),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        rng = self.headers.get("Range")
        if rng is None:
            return self.reply(200, data, headers, head)
        spec = rng.strip()
        if not spec.startswith("bytes=") or "," in spec:
            return self.error(400, "InvalidArgument", "Unsupported range " + rng, head)
        first, _, last = spec[len("bytes="):].partition("-")
        n = len(data)
        if first == "":
            start, end = max(n - int(last), 0), n - 1
        else:
            start = int(first)
            end = min(int(last), n - 1) if last else n - 1
        if start >= n or start > end:
            headers["Content-Range"] = "bytes */%d" % n
            return self.error(416, "InvalidRange", "The requested range cannot be satisfied.", head)
        headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, n)
        return self.reply(206, data[start : end + 1], headers, head)

    def do_HEAD(self):
        self.do_GET(head=True)

    def list(self, bucket, query):
        one = lambda k, d="": query.get(k, [d])[0]
        if one("list-type") != "2":
            return self.error(400, "InvalidArgument", "this emulator lists with list-type=2 only")
        prefix, delimiter = one("prefix"), one("delimiter")
        after = max(one("start-after"), one("continuation-token"))
        max_keys = int(one("max-keys", "1000"))
        with LOCK:
            names = sorted(BUCKETS[bucket])
            snapshot = {k: BUCKETS[bucket][k] for k in names}
        # Every entry after the marker, in order: an object, or a common prefix (once).
        entries = []
        for k in names:
            if not k.startswith(prefix) or (after and k <= after):
                continue
            cut = k.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                entries.append(("key", k, k))
                continue
            p = k[: cut + len(delimiter)]
            if entries and entries[-1][1] == p:
                continue
            # The next page resumes after every object under this prefix.
            entries.append(("prefix", p, p + "\uffff"))
        page, token = entries[:max_keys], None
        if len(entries) > max_keys and page:
            token = page[-1][2]
        contents = [name for kind, name, _ in page if kind == "key"]
        prefixes = [name for kind, name, _ in page if kind == "prefix"]
        xml = ["<?xml version='1.0' encoding='UTF-8'?>"]
        xml.append("<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'>")
        xml.append("<Name>%s</Name><Prefix>%s</Prefix>" % (escape(bucket), escape(prefix)))
        xml.append("<KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys>" % (len(contents) + len(prefixes), max_keys))
        xml.append("<IsTruncated>%s</IsTruncated>" % ("true" if token else "false"))
        for k in contents:
            data, generation, mtime = snapshot[k]
            xml.append(
                "<Contents><Key>%s</Key><Generation>%d</Generation><LastModified>%s</LastModified>"
                "<ETag>%s</ETag><Size>%d</Size></Contents>"
                % (escape(k), generation, iso(mtime), escape(etag(data)), len(data))
            )
        for p in prefixes:
            xml.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(p))
        if token:
            xml.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(token))
        xml.append("</ListBucketResult>")
        self.reply(200, "".join(xml).encode(), {"Content-Type": "application/xml"})

    def do_PUT(self):
        t = self.target()
        if t is None:
            return
        bucket, name, query = t
        data = self.body()
        if name is None or query:
            return self.error(501, "NotImplemented", "only object uploads and copies are emulated")
        source = self.headers.get("x-goog-copy-source")
        with LOCK:
            objects = BUCKETS[bucket]
            if source is not None:
                src_bucket, _, src_name = unquote(source.lstrip("/")).partition("/")
                src = BUCKETS.get(src_bucket, {}).get(src_name)
                if src is None:
                    return self.error(404, "NoSuchKey", "The copy source does not exist.")
                data = src[0]
            if not self.precondition(objects, name):
                return
            GENERATION[0] += 1
            objects[name] = (data, GENERATION[0], time.time())
            generation = GENERATION[0]
        self.reply(200, b"", {"ETag": etag(data), "x-goog-generation": str(generation)})

    def do_DELETE(self):
        t = self.target()
        if t is None:
            return
        bucket, name, query = t
        if name is None or query:
            return self.error(501, "NotImplemented", "only object deletes are emulated")
        with LOCK:
            if BUCKETS[bucket].pop(name, None) is None:
                return self.error(404, "NoSuchKey", "The specified key does not exist.")
        self.reply(204)

    def do_POST(self):
        self.body()
        self.error(501, "NotImplemented", "multipart uploads are not emulated")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bucket", action="append", default=[])
    args = ap.parse_args()
    for b in args.bucket:
        BUCKETS[b] = {}
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    sys.stderr.write("gcs emulator on %s:%d, buckets %s\n" % (args.host, args.port, args.bucket))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
